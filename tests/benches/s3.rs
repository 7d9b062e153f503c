//! S3 side by side, in one run, on the same bucket of one `s3s-fs` server: MusicFS
//! (S3 plugin) against `rclone mount` and `s3fs`. For each: the requests it sends
//! to list and read a 200-track library (counted from the server's request log),
//! the time to the first byte of an uncached 50 MB object (at its start and in its
//! middle), and its sequential throughput.
//!
//! s3fs looks for folder objects with a HEAD of `folder/` and `folder`, which
//! s3s-fs answers with 500 (a folder is not an object there; AWS would say 404).
//! With `retries=1` s3fs gives up on those after its back-off and lists the
//! folder anyway, so its walk is slow here and its HEAD count includes three such
//! requests per folder; its reads are not affected.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench s3`

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use musicfs_tests::bench_support::{
    first_byte, noise_file, peak_rss_mb, rclone_s3_flags, read_speed, reset_peak_rss, rss_mb,
    tagged_library, tagged_track_shown, PeerMount,
};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{
    mount_args, origins_config, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY,
};

const TRACKS: usize = 200;
const BIG: u64 = 50 << 20;

struct Figures {
    tool: &'static str,
    library: BTreeMap<String, usize>,
    big: BTreeMap<String, usize>,
    ttfb_start: Duration,
    ttfb_middle: Duration,
    mbps: f64,
    /// Resident memory before reading the 50 MB object, and its peak while
    /// reading it (MB).
    rss_before: f64,
    rss_peak: f64,
}

fn diff(
    after: &BTreeMap<String, usize>,
    before: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Stats every entry and reads every file below `root` but `skip`; returns files read.
fn walk_and_read(root: &Path, skip: &str) -> usize {
    let mut read = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if !path.ends_with(skip) {
                std::fs::read(&path).unwrap();
                read += 1;
            }
        }
    }
    read
}

/// Measures one mounted tool, process `pid`: `library` is the folder holding
/// the tracks, `big` the 50 MB object's path.
fn measure(
    tool: &'static str,
    pid: u32,
    server: &S3Server,
    library: &Path,
    big: &Path,
    big_name: &str,
) -> Figures {
    let before = server.request_counts();
    let files = walk_and_read(library, big_name);
    assert!(files >= TRACKS, "{tool}: only {files} files read");
    let after_library = server.request_counts();
    let rss_before = rss_mb(pid);
    reset_peak_rss(pid);
    let ttfb_middle = first_byte(big, BIG / 2);
    let ttfb_start = first_byte(big, 0);
    let mbps = read_speed(big);
    let rss_peak = peak_rss_mb(pid);
    let after_big = server.request_counts();
    Figures {
        tool,
        library: diff(&after_library, &before),
        big: diff(&after_big, &after_library),
        ttfb_start,
        ttfb_middle,
        mbps,
        rss_before,
        rss_peak,
    }
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let server = S3Server::start_logging(Some(&work.join("requests.log")));
    tagged_library(&server.object_path("lib"), TRACKS);
    noise_file(&server.object_path("lib/big/fifty.flac"), BIG, 5);

    // MusicFS: the scan (listing and tag reads) happens at mount; count from before it.
    let mut origin = server.origin("bucket", "lib");
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let args = mount_args(&work.join("musicfs"), &origins_config(vec![origin]));
    let before_mount = server.request_counts();
    let last = tagged_track_shown(TRACKS - 1);
    let mount = Mounted::start(
        &work.join("musicfs"),
        &work.join("musicfs-cache"),
        &args,
        Some(&last),
    );
    let scan = diff(&server.request_counts(), &before_mount);
    let big = mount.path("Unknown Artist/Unknown Album/fifty.flac");
    let pid = mount.pid().expect("the daemon runs");
    let mut musicfs = measure(
        "MusicFS",
        pid,
        &server,
        &mount.mountpoint,
        &big,
        "fifty.flac",
    );
    for (op, n) in scan {
        *musicfs.library.entry(op).or_insert(0) += n;
    }
    drop(mount);

    let flags = rclone_s3_flags(&server);
    let rclone = PeerMount::rclone_remote(&format!(":s3:{BUCKET}"), &flags, work);
    let rclone_figures = measure(
        "rclone",
        rclone.pid(),
        &server,
        &rclone.mountpoint.join("lib"),
        &rclone.mountpoint.join("lib/big/fifty.flac"),
        "fifty.flac",
    );
    drop(rclone);

    let s3fs = PeerMount::s3fs(BUCKET, &server.endpoint(), ACCESS_KEY, SECRET_KEY, work);
    let s3fs_figures = measure(
        "s3fs",
        s3fs.pid(),
        &server,
        &s3fs.mountpoint.join("lib"),
        &s3fs.mountpoint.join("lib/big/fifty.flac"),
        "fifty.flac",
    );
    drop(s3fs);

    println!(
        "{TRACKS}-track library + a {} MB object, one s3s-fs server on loopback\n",
        BIG >> 20
    );
    println!("{:<8} {:>14} {:>15} {:>10} {:>18}   requests to list + read the library   requests to read the 50 MB object", "tool", "TTFB start", "TTFB middle", "MB/s", "RSS MB (peak)");
    for f in [&musicfs, &rclone_figures, &s3fs_figures] {
        let show = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(op, n)| format!("{op} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<8} {:>11.2} ms {:>12.2} ms {:>10.0} {:>9.0} ({:>5.0})   {:<36}  {}",
            f.tool,
            f.ttfb_start.as_secs_f64() * 1e3,
            f.ttfb_middle.as_secs_f64() * 1e3,
            f.mbps,
            f.rss_before,
            f.rss_peak,
            show(&f.library),
            show(&f.big)
        );
    }
    let gets = |f: &Figures| f.big.get("GetObject").copied().unwrap_or(0);
    println!(
        "\nMusicFS / rclone: throughput {:.2}x, TTFB middle {:.2}x (below 1 is faster), \
         GETs for the 50 MB object {} vs {}",
        musicfs.mbps / rclone_figures.mbps,
        musicfs.ttfb_middle.as_secs_f64() / rclone_figures.ttfb_middle.as_secs_f64(),
        gets(&musicfs),
        gets(&rclone_figures),
    );
    println!(
        "(TTFB start: MusicFS holds a file's head from its tag scan; the peers read it then.)"
    );
}
