//! The mount, side by side with the raw files and `rclone mount` on the same data,
//! in one run:
//!
//! - sequential read of a 512 MB file: raw (page cache warm), MusicFS cold (empty
//!   cache), MusicFS passed through (same mount, once the whole copy is made;
//!   as root), MusicFS warm (fresh mount: the whole copy as root), and with
//!   `passthrough = false` the chunk cache on a fresh mount, the kernel's page
//!   cache after it, and the chunk cache with the kernel's 128 KiB read-ahead;
//!   beside them the ceiling: a FUSE file system answering from memory
//!   (`examples/fuse_ceiling.rs`), bare and with the copy and hash a read
//!   from the chunk cache cannot avoid;
//!   rclone `--vfs-cache-mode full` cold and warm; page-cache rows are the best
//!   of three; and `musicfs pin` of the album holding it (and the 50 MB file)
//!   into an empty cache;
//! - time to first byte (first 4 KiB) of an uncached 50 MB file;
//! - `find` + `stat` of a 20,000-track tree (tagged FLACs; `BENCH_TRACKS` sets
//!   another count, in thousands of albums of ten), raw, MusicFS, rclone;
//!   MusicFS's first scan of it, and the time a restart takes to list the root;
//! - peak RSS of the MusicFS daemon.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench mount`

use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{
    find_stat, first_byte, noise_file, peak_rss_mb, read_speed, tagged_library, tagged_track_shown,
    PeerMount,
};
use musicfs_tests::mounted::Mounted;

const BIG: u64 = 512 << 20;
const FIFTY: u64 = 50 << 20;
const TRACKS: usize = 20_000;

/// Tracks in the tree section: `BENCH_TRACKS`, or [`TRACKS`].
fn tracks() -> usize {
    std::env::var("BENCH_TRACKS")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("BENCH_TRACKS={v} is not a number of tracks"))
        })
        .unwrap_or(TRACKS)
}

/// The whole copy of `len` bytes in `cache`, if it holds one (see the
/// cache's `whole_copies`).
fn whole_copy(cache: &Path, len: u64) -> Option<std::path::PathBuf> {
    std::fs::read_dir(cache.join("whole"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.metadata().is_ok_and(|m| m.len() == len)
                && !e.file_name().to_string_lossy().ends_with(".part")
        })
        .map(|e| e.path())
}

fn mount(work: &Path, name: &str, cache: &Path, source: &Path, ready: &str) -> Mounted {
    mount_with(work, name, cache, source, ready, "")
}

/// A mount with `cache_settings` in its `[cache]` table.
fn mount_with(
    work: &Path,
    name: &str,
    cache: &Path,
    source: &Path,
    ready: &str,
    cache_settings: &str,
) -> Mounted {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec!["--origin".into(), format!("local:{}", source.display())];
    if !cache_settings.is_empty() {
        let config = dir.join("musicfs.toml");
        std::fs::write(&config, format!("[cache]\n{cache_settings}\n")).unwrap();
        args.extend(["--config".into(), config.display().to_string()]);
    }
    Mounted::start(&dir, cache, &args, Some(ready))
}

/// The best of three reads of `path` (for reads from a page cache, where
/// one run is mostly noise), in MB/s.
fn best_of_three(path: &Path) -> f64 {
    (0..3).map(|_| read_speed(path)).fold(0.0, f64::max)
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    // BENCH_ONLY=files or BENCH_ONLY=tree runs one half.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "tree" {
        files_section(work);
    }
    if only != "files" {
        tree_section(work);
    }
}

fn files_section(work: &Path) {
    let files = work.join("files");
    std::fs::create_dir_all(&files).unwrap();
    noise_file(&files.join("big.flac"), BIG, 1);
    noise_file(&files.join("fifty.flac"), FIFTY, 2);
    let big_shown = "Unknown Artist/Unknown Album/big.flac";
    let fifty_shown = "Unknown Artist/Unknown Album/fifty.flac";

    println!(
        "sequential read of a {} MB file (MB/s; ratio to raw)",
        BIG >> 20
    );
    let raw = best_of_three(&files.join("big.flac"));
    let row = |name: &str, mbps: f64| println!("  {name:<48} {mbps:>8.0}   {:>5.2}x", mbps / raw);
    row("raw file (page cache, best of 3)", raw);

    let cache = work.join("musicfs-cache");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let first = mount(work, "m1", &cache, &files, big_shown);
    let cold = read_speed(&first.path(big_shown));
    // Closing a fully cached file starts its whole copy (as root).
    let passed = root.then(|| {
        first.wait_until(Duration::from_secs(120), |_| {
            whole_copy(&cache, BIG).is_some()
        });
        let copy = whole_copy(&cache, BIG).expect("just made");
        (best_of_three(&first.path(big_shown)), best_of_three(&copy))
    });
    let ttfb_musicfs = first_byte(&first.path(fifty_shown), 0);
    let rss_files = first.pid().map_or(0.0, peak_rss_mb);
    first.stop();
    let second = mount(work, "m2", &cache, &files, big_shown);
    let warm = read_speed(&second.path(big_shown));
    second.stop();
    // Without passthrough: the chunk cache, then the kernel's page cache.
    let third = mount_with(
        work,
        "m2n",
        &cache,
        &files,
        big_shown,
        "passthrough = false",
    );
    let warm_chunks = read_speed(&third.path(big_shown));
    let hot = best_of_three(&third.path(big_shown));
    third.stop();
    // The same, with the kernel's own 128 KiB read-ahead.
    let fourth = mount_with(
        work,
        "m2r",
        &cache,
        &files,
        big_shown,
        "passthrough = false\nread_ahead_kb = 0",
    );
    let warm_small = read_speed(&fourth.path(big_shown));
    fourth.stop();
    row("MusicFS cold (empty cache)", cold);
    if let Some((passed, copy)) = passed {
        row("the whole copy itself, read directly (best of 3)", copy);
        row("MusicFS passed through (same mount, best of 3)", passed);
        row("MusicFS warm (fresh mount, whole copy)", warm);
    }
    row("MusicFS warm (fresh mount, chunk cache)", warm_chunks);
    if let Some((bare, verify)) = fuse_ceiling(work) {
        row("  ceiling: FUSE answering from memory", bare);
        row("  ceiling: the same, each byte copied and hashed", verify);
    }
    row("MusicFS hot (kernel page cache, best of 3)", hot);
    row("MusicFS warm, chunk cache, read-ahead 128 KiB", warm_small);

    // `musicfs pin` of the album (both files) into an empty cache: the files
    // fetched whole onto the cache's disk.
    let pinning = mount(work, "m5", &work.join("pin-cache"), &files, big_shown);
    let album = pinning.path("Unknown Artist/Unknown Album");
    let started = Instant::now();
    let out = std::process::Command::new(musicfs_tests::musicfs_binary())
        .arg("pin")
        .arg(&album)
        .output()
        .unwrap();
    let pin_seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pinning.stop();
    row(
        "musicfs pin of the album, 562 MB (empty cache)",
        (BIG + FIFTY) as f64 / 1e6 / pin_seconds,
    );

    let rclone = PeerMount::rclone(&files, work);
    let rclone_cold = read_speed(&rclone.mountpoint.join("big.flac"));
    let rclone_warm = read_speed(&rclone.mountpoint.join("big.flac"));
    let ttfb_rclone = first_byte(&rclone.mountpoint.join("fifty.flac"), 0);
    drop(rclone);
    row("rclone mount --vfs-cache-mode full, cold", rclone_cold);
    row("rclone mount --vfs-cache-mode full, warm", rclone_warm);

    println!(
        "\ntime to first byte of an uncached {} MB file",
        FIFTY >> 20
    );
    let ttfb_raw = {
        // Evict the raw file from the page cache for a fair first byte.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
        first_byte(&files.join("fifty.flac"), 0)
    };
    println!(
        "  raw file          {:>8.2} ms",
        ttfb_raw.as_secs_f64() * 1e3
    );
    println!(
        "  MusicFS           {:>8.2} ms",
        ttfb_musicfs.as_secs_f64() * 1e3
    );
    println!(
        "  rclone mount      {:>8.2} ms",
        ttfb_rclone.as_secs_f64() * 1e3
    );

    println!("\npeak RSS of the MusicFS daemon after the 512 MB + 50 MB reads: {rss_files:.0} MB");
}

/// The read speed of `examples/fuse_ceiling.rs` mounted with MusicFS's
/// kernel settings: bare, and with the copy and BLAKE3 every read from the
/// chunk cache does. `None` (and why) if it cannot be built or mounted.
fn fuse_ceiling(work: &Path) -> Option<(f64, f64)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--release", "-q", "-p", "musicfs-tests"])
        .args(["--example", "fuse_ceiling"])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("  (the FUSE ceiling could not be built)");
        return None;
    }
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/examples/fuse_ceiling");
    let mut speeds = Vec::new();
    for mode in ["bare", "verify"] {
        let mnt = work.join(format!("ceiling-{mode}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let mut child = std::process::Command::new(&exe)
            .arg(&mnt)
            .arg(BIG.to_string())
            .arg(mode)
            .spawn()
            .ok()?;
        let file = mnt.join("big");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if file.exists() {
            use std::os::unix::fs::MetadataExt;
            // As MusicFS raises it (as root; else both keep 128 KiB).
            let dev = std::fs::metadata(&mnt).unwrap().dev();
            let _ = musicfs::fs::read_ahead::set(dev, 1024);
            speeds.push(read_speed(&file));
        }
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status();
        let _ = child.wait();
    }
    match speeds[..] {
        [bare, verify] => Some((bare, verify)),
        _ => {
            println!("  (the FUSE ceiling could not be mounted)");
            None
        }
    }
}

fn tree_section(work: &Path) {
    let tracks = tracks();
    println!("\nfind + stat of a {tracks}-track tree");
    let library = work.join("library");
    tagged_library(&library, tracks);
    let (raw_n, raw_t) = find_stat(&library);
    let lib_cache = work.join("library-cache");
    let origin = ["--origin".into(), format!("local:{}", library.display())];
    let started = Instant::now();
    let first = {
        let dir = work.join("m3");
        std::fs::create_dir_all(&dir).unwrap();
        Mounted::start(&dir, &lib_cache, &origin, None)
    };
    // A hang detector, not a speed bound: a minute, plus one per 10,000 tracks.
    let limit = Duration::from_secs(60 + tracks as u64 / 10_000 * 60);
    first.wait_until(limit, |m| m.path(&tagged_track_shown(tracks - 1)).exists());
    let scan = started.elapsed();
    let (m_n, m_t) = find_stat(&first.mountpoint);
    let rss = first.pid().map_or(0.0, peak_rss_mb);
    first.stop();
    let started = Instant::now();
    let restarted = {
        let dir = work.join("m4");
        std::fs::create_dir_all(&dir).unwrap();
        Mounted::start(&dir, &lib_cache, &origin, None)
    };
    let root_entries = std::fs::read_dir(&restarted.mountpoint).unwrap().count();
    let restart_ls = started.elapsed();
    let (r_n, r_t) = find_stat(&restarted.mountpoint);
    restarted.stop();
    let rclone = PeerMount::rclone(&library, work);
    let (c_n, c_t) = find_stat(&rclone.mountpoint);
    drop(rclone);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  raw folder        {:>9.1} ms  ({raw_n} entries)",
        ms(raw_t)
    );
    println!(
        "  MusicFS           {:>9.1} ms  ({m_n} entries)   {:>6.1}x raw",
        ms(m_t),
        ms(m_t) / ms(raw_t)
    );
    println!(
        "  MusicFS restarted {:>9.1} ms  ({r_n} entries)   {:>6.1}x raw",
        ms(r_t),
        ms(r_t) / ms(raw_t)
    );
    println!(
        "  rclone mount      {:>9.1} ms  ({c_n} entries)   {:>6.1}x raw",
        ms(c_t),
        ms(c_t) / ms(raw_t)
    );
    println!(
        "  MusicFS first scan of the library (mount to last track shown): {:.1} s",
        scan.as_secs_f64()
    );
    println!(
        "  restart to `ls` of the root ({root_entries} entries): {:.0} ms",
        ms(restart_ls)
    );

    println!(
        "\npeak RSS of the MusicFS daemon with {tracks} tracks scanned and walked: {rss:.0} MB ({:.0} bytes a track)",
        rss * 1e6 / tracks as f64
    );
}
