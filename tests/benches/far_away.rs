//! Far away, side by side in one run: an SFTP origin (a real OpenSSH `sshd`)
//! behind an emulated link (`musicfs_tests::link`, `BENCH_LINK` = `lan`, `wan`
//! (default) or `far`), served by MusicFS, `sshfs` and `rclone mount
//! --vfs-cache-mode full` over the same link. The library: `BENCH_TRACKS`
//! (default 2,000) small tagged FLACs and three 21.5 MB tracks.
//!
//! Each row gives the time and the bytes that crossed the link from the server:
//! - a tagged library: MusicFS from `mount` until every track shows (its scan);
//!   the peers from `mount` until 8 parallel tag readers (lofty) have read every
//!   track through them;
//! - the first 4 KiB of an unplayed 21.5 MB track, then a seek to its middle
//!   and 4 KiB there;
//! - a cold sequential read of another 21.5 MB track (and its share of the
//!   link's rate);
//! - `find` + `stat` of every file;
//! - MusicFS alone: a restart (the time to list every file, and the bytes of
//!   the rescan of the unchanged library that follows), and a track added on the server until it
//!   shows (polling every `BENCH_POLL_SECS`, default 10).
//!
//! `BENCH_PEERS=0` measures MusicFS alone (for a library the peers would take
//! hours over).
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench far_away`
//! (as root: the link needs a network namespace; needs sshd, sshfs and rclone).

use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{
    add_tagged_track, find_stat, noise_file, rclone_sftp_flags, tagged_library, tagged_track_shown,
    tagged_track_source, PeerMount,
};
use musicfs_tests::link::{Link, Profile, Stats};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args_for, origins_config};
use musicfs_tests::ssh_server::SshServer;

const BIG: u64 = 21_500_000;

/// Time and bytes from the server of one row.
#[derive(Clone, Copy, Default)]
struct Row {
    time: Duration,
    bytes: u64,
}

impl Row {
    fn cell(&self) -> String {
        format!(
            "{:.2} s, {:.1} MB",
            self.time.as_secs_f64(),
            self.bytes as f64 / 1e6
        )
    }
}

/// Runs `work` and measures it: the time it took and what crossed the link
/// until the link was quiet after it.
fn row(link: &Link, work: impl FnOnce()) -> Row {
    let before = link.settled();
    let started = Instant::now();
    work();
    let time = started.elapsed();
    let moved: Stats = link.settled() - before;
    Row {
        time,
        bytes: moved.to_clients.bytes,
    }
}

/// Reads the tags of every `.flac` below `root` with `parallel` readers.
fn read_all_tags(root: &Path, parallel: usize) -> usize {
    use lofty::config::ParseOptions;
    use lofty::file::TaggedFileExt;
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "flac") {
                files.push(path);
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let tagged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let read = lofty::probe::Probe::open(path)
                    .and_then(|p| p.options(ParseOptions::new().read_properties(false)).read());
                if read.is_ok_and(|f| f.primary_tag().is_some()) {
                    tagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    tagged.into_inner()
}

/// The rows every tool has.
struct Figures {
    tool: &'static str,
    library: Row,
    head: Row,
    seek: Row,
    cold: Row,
    list: Row,
}

/// Measures a tool whose view of the library is `root` (`big` holds the
/// large tracks), after `ready` made the tagged library.
fn measure(tool: &'static str, link: &Link, library: Row, big: &Path, root: &Path) -> Figures {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(big.join("a.flac")).unwrap();
    let mut buf = vec![0u8; 4096];
    let head = row(link, || file.read_exact_at(&mut buf, 0).unwrap());
    let seek = row(link, || file.read_exact_at(&mut buf, BIG / 2).unwrap());
    let cold = row(link, || {
        std::io::copy(
            &mut std::fs::File::open(big.join("b.flac")).unwrap(),
            &mut std::io::sink(),
        )
        .unwrap();
    });
    let list = row(link, || {
        find_stat(root);
    });
    Figures {
        tool,
        library,
        head,
        seek,
        cold,
        list,
    }
}

fn main() {
    let profile_name = std::env::var("BENCH_LINK").unwrap_or_else(|_| "wan".into());
    let profile = Profile::named(&profile_name).expect("BENCH_LINK is lan, wan or far");
    let tracks: usize = std::env::var("BENCH_TRACKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2000);
    let poll: i64 = std::env::var("BENCH_POLL_SECS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let link = Link::new(profile);
    let server = SshServer::start_at(link.site());
    tagged_library(&server.library, tracks);
    for (name, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        noise_file(&server.library.join(format!("big/{name}.flac")), BIG, seed);
    }

    // MusicFS.
    let mut origin = server.origin("seedbox");
    origin.insert("poll_interval_secs".into(), poll.into());
    origin.insert("request_timeout_secs".into(), 30i64.into());
    let mfs_work = work.join("musicfs");
    let args = mount_args_for(&mfs_work, &origins_config(vec![origin]), "musicfs_sftp");
    let cache = mfs_work.join("cache");
    let all_shown = |m: &Mounted| {
        (0..tracks)
            .rev()
            .all(|i| m.path(&tagged_track_shown(i)).exists())
    };
    let mut mount = None;
    let library = row(&link, || {
        let m = Mounted::start(&mfs_work, &cache, &args, None);
        m.wait_until(Duration::from_secs(3600), all_shown);
        mount = Some(m);
    });
    let m = mount.take().unwrap();
    let warnings: Vec<String> = m
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    let root = m.mountpoint.clone();
    let musicfs = measure(
        "MusicFS",
        &link,
        library,
        &root.join("Unknown Artist/Unknown Album"),
        &root,
    );
    drop(m);
    // A restart: the tree is shown before any origin call; the rescan of the
    // unchanged library follows in the background.
    let mut restarted = None;
    let relist = row(&link, || {
        let m = Mounted::start(&mfs_work, &cache, &args, Some(&tagged_track_shown(0)));
        find_stat(&m.mountpoint);
        restarted = Some(m);
    });
    let m = restarted.take().unwrap();
    let added = tagged_track_shown(tracks);
    let watch = row(&link, || {
        add_tagged_track(&server.library, tracks);
        m.wait_until(Duration::from_secs(3600), |m| m.path(&added).exists());
    });
    drop(m);
    std::fs::remove_file(server.library.join(tagged_track_source(tracks))).unwrap();

    if !warnings.is_empty() {
        println!(
            "MusicFS warned {} times while scanning; the first:",
            warnings.len()
        );
        for w in warnings.iter().take(5) {
            println!("  {w}");
        }
    }
    let peers = std::env::var("BENCH_PEERS").map_or(true, |v| v != "0");
    if !peers {
        println!(
            "MusicFS alone: a tagged library {}, first 4 KiB {}, seek {}, cold {}, list {}, restart {}, a track added {}",
            musicfs.library.cell(),
            musicfs.head.cell(),
            musicfs.seek.cell(),
            musicfs.cold.cell(),
            musicfs.list.cell(),
            relist.cell(),
            watch.cell()
        );
        return;
    }

    // sshfs, and 8 tag readers through it.
    let addr = server.site.addr.to_string();
    let mut peer = None;
    let library = row(&link, || {
        let p = PeerMount::sshfs(
            &addr,
            server.port,
            &server.library,
            &server.client_key,
            &server.known_hosts,
            work,
        );
        read_all_tags(&p.mountpoint, 8);
        peer = Some(p);
    });
    let p = peer.take().unwrap();
    let sshfs = measure(
        "sshfs",
        &link,
        library,
        &p.mountpoint.join("big"),
        &p.mountpoint,
    );
    drop(p);

    // rclone mount with a full cache, and 8 tag readers through it.
    let flags = rclone_sftp_flags(&server);
    let remote = format!(":sftp:{}", server.library.display());
    let library = row(&link, || {
        let p = PeerMount::rclone_remote(&remote, &flags, work);
        read_all_tags(&p.mountpoint, 8);
        peer = Some(p);
    });
    let p = peer.take().unwrap();
    let rclone = measure(
        "rclone",
        &link,
        library,
        &p.mountpoint.join("big"),
        &p.mountpoint,
    );
    drop(p);

    let link_mb_s = profile.bytes_per_sec() / 1e6;
    println!(
        "SFTP over `{profile_name}` ({} Mbit/s, {} ms round trip, {}% loss): {tracks} tagged tracks and three of {} MB; time, and MB from the server\n",
        profile.rate_bps / 1_000_000,
        profile.rtt.as_millis(),
        profile.loss * 100.0,
        BIG as f64 / 1e6
    );
    println!(
        "{:<40} {:>22} {:>22} {:>22}",
        "work", "MusicFS", "sshfs", "rclone"
    );
    let all = [&musicfs, &sshfs, &rclone];
    let line = |name: &str, cell: &dyn Fn(&Figures) -> String| {
        println!(
            "{:<40} {:>22} {:>22} {:>22}",
            name,
            cell(all[0]),
            cell(all[1]),
            cell(all[2])
        );
    };
    line("a tagged library", &|f| f.library.cell());
    line("first 4 KiB of an unplayed track", &|f| f.head.cell());
    line("then a seek to its middle + 4 KiB", &|f| f.seek.cell());
    line("cold sequential read", &|f| f.cold.cell());
    line("  MB/s (share of the link)", &|f| {
        let rate = BIG as f64 / f.cold.time.as_secs_f64() / 1e6;
        format!("{rate:.1} ({:.2})", rate / link_mb_s)
    });
    line("list every file", &|f| f.list.cell());
    println!(
        "{:<40} {:>22}",
        "MusicFS restart: list every file",
        relist.cell()
    );
    println!(
        "  (its MB: the rescan of the unchanged library that follows, until the link is quiet)"
    );
    println!(
        "{:<40} {:>22}",
        format!("a track added, until shown (poll {poll} s)"),
        watch.cell()
    );
    println!();
    for peer in [&sshfs, &rclone] {
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "MusicFS against {}: tagged library {:.1}x faster, seek {:.2}x, cold read {:.2}x (above 1 is faster)",
            peer.tool,
            ratio(musicfs.library.time, peer.library.time),
            ratio(musicfs.seek.time, peer.seek.time),
            ratio(musicfs.cold.time, peer.cold.time),
        );
    }
}
