//! Far away, side by side in one run: an SFTP origin (a real OpenSSH `sshd`)
//! served by MusicFS, `sshfs` and `rclone mount --vfs-cache-mode full`, then an
//! S3 bucket (a real `s3s-fs`) served by MusicFS and rclone, each behind an
//! emulated link (`musicfs_tests::link`, `BENCH_LINK` = `lan`, `wan` (default)
//! or `far`). `BENCH_KINDS` picks them (`sftp,s3`). The library: `BENCH_TRACKS`
//! (default 2,000) small tagged FLACs and three 21.5 MB tracks. On S3 the
//! server's GETs are counted too.
//!
//! Each row gives the time and the bytes that crossed the link from the server:
//! - a tagged library: MusicFS from `mount` until every track shows (its scan,
//!   the mount's start included); the peers, once mounted, until 8 parallel tag
//!   readers (lofty) have read every track through them;
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
    add_tagged_track, find_stat, noise_file, rclone_s3_flags, rclone_sftp_flags, tagged_library,
    tagged_track_shown, tagged_track_source, PeerMount,
};
use musicfs_tests::link::{Link, Profile, Stats};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args_for, origins_config, S3Server, BUCKET};
use musicfs_tests::ssh_server::SshServer;

const BIG: u64 = 21_500_000;

/// Time and bytes from the server of one row, and the requests the server
/// counted (S3's GETs).
#[derive(Clone, Copy, Default)]
struct Row {
    time: Duration,
    bytes: u64,
    requests: Option<usize>,
}

impl Row {
    fn cell(&self) -> String {
        let requests = self
            .requests
            .map_or(String::new(), |n| format!(", {n} GET"));
        format!(
            "{:.2} s, {:.1} MB{requests}",
            self.time.as_secs_f64(),
            self.bytes as f64 / 1e6
        )
    }
}

/// The server's count of requests, where it keeps one.
type Requests<'a> = &'a dyn Fn() -> Option<usize>;

/// Runs `work` and measures it: the time it took and what crossed the link
/// until the link was quiet after it.
fn row(link: &Link, work: impl FnOnce()) -> Row {
    row_counting(link, &|| None, work)
}

/// [`row`], with the requests `requests` counted meanwhile.
fn row_counting(link: &Link, requests: Requests, work: impl FnOnce()) -> Row {
    let before = link.settled();
    let asked = requests();
    let started = Instant::now();
    work();
    let time = started.elapsed();
    let moved: Stats = link.settled() - before;
    Row {
        time,
        bytes: moved.to_clients.bytes,
        requests: asked.zip(requests()).map(|(before, now)| now - before),
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
fn measure(
    tool: &'static str,
    link: &Link,
    library: Row,
    big: &Path,
    root: &Path,
    requests: Requests,
) -> Figures {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(big.join("a.flac")).unwrap();
    let mut buf = vec![0u8; 4096];
    let head = row_counting(link, requests, || file.read_exact_at(&mut buf, 0).unwrap());
    let seek = row_counting(link, requests, || {
        file.read_exact_at(&mut buf, BIG / 2).unwrap()
    });
    let cold = row_counting(link, requests, || {
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

/// What the bench was asked for.
struct Setup {
    profile_name: String,
    profile: Profile,
    tracks: usize,
    poll: i64,
    peers: bool,
}

/// MusicFS's rows, and those only it has.
struct MusicFs {
    figures: Figures,
    relist: Row,
    watch: Row,
}

/// Mounts `origin` (of plugin `plugin`) whose server keeps the library in
/// `library`, and measures MusicFS: the rows every tool has, a restart, and a
/// track added on the server.
fn measure_musicfs(
    setup: &Setup,
    link: &Link,
    work: &Path,
    plugin: &str,
    mut origin: toml::Table,
    library: &Path,
    requests: Requests,
) -> MusicFs {
    let tracks = setup.tracks;
    origin.insert("poll_interval_secs".into(), setup.poll.into());
    let mfs_work = work.join(format!("musicfs-{plugin}"));
    let args = mount_args_for(&mfs_work, &origins_config(vec![origin]), plugin);
    let cache = mfs_work.join("cache");
    let all_shown = |m: &Mounted| {
        (0..tracks)
            .rev()
            .all(|i| m.path(&tagged_track_shown(i)).exists())
    };
    let mut mount = None;
    let library_row = row_counting(link, requests, || {
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
    if !warnings.is_empty() {
        println!(
            "MusicFS warned {} times while scanning; the first:",
            warnings.len()
        );
        for w in warnings.iter().take(5) {
            println!("  {w}");
        }
    }
    let root = m.mountpoint.clone();
    let figures = measure(
        "MusicFS",
        link,
        library_row,
        &root.join("Unknown Artist/Unknown Album"),
        &root,
        requests,
    );
    drop(m);
    // A restart: the tree is shown before any origin call; the rescan of the
    // unchanged library follows in the background.
    let mut restarted = None;
    let relist = row_counting(link, requests, || {
        let m = Mounted::start(&mfs_work, &cache, &args, Some(&tagged_track_shown(0)));
        find_stat(&m.mountpoint);
        restarted = Some(m);
    });
    let m = restarted.take().unwrap();
    let added = tagged_track_shown(tracks);
    let watch = row(link, || {
        add_tagged_track(library, tracks);
        m.wait_until(Duration::from_secs(3600), |m| m.path(&added).exists());
    });
    drop(m);
    std::fs::remove_file(library.join(tagged_track_source(tracks))).unwrap();
    if !setup.peers {
        let f = &figures;
        println!(
            "MusicFS alone ({plugin}): a tagged library {}, first 4 KiB {}, seek {}, cold {}, list {}, restart {}, a track added {}",
            f.library.cell(),
            f.head.cell(),
            f.seek.cell(),
            f.cold.cell(),
            f.list.cell(),
            relist.cell(),
            watch.cell()
        );
    }
    MusicFs {
        figures,
        relist,
        watch,
    }
}

/// Measures a peer mounted by `mount` (whose view of the library is its
/// mountpoint, the large tracks in `big/`), with 8 tag readers through it
/// once it is mounted (rclone's S3 backend takes 90 s to mount behind the
/// link, waiting on timeouts of its own: not what is compared here).
fn measure_peer(
    tool: &'static str,
    link: &Link,
    requests: Requests,
    mount: impl FnOnce() -> PeerMount,
) -> Figures {
    let p = mount();
    let library = row_counting(link, requests, || {
        read_all_tags(&p.mountpoint, 8);
    });
    let figures = measure(
        tool,
        link,
        library,
        &p.mountpoint.join("big"),
        &p.mountpoint,
        requests,
    );
    drop(p);
    figures
}

/// Prints the table of `what` for MusicFS and `peers`, and the ratios.
fn report(setup: &Setup, what: &str, musicfs: &MusicFs, peers: &[Figures]) {
    let profile = setup.profile;
    let link_mb_s = profile.bytes_per_sec() / 1e6;
    println!(
        "\n{what} over `{}` ({} Mbit/s, {} ms round trip, {}% loss): {} tagged tracks and three of {} MB; time, MB from the server\n",
        setup.profile_name,
        profile.rate_bps / 1_000_000,
        profile.rtt.as_millis(),
        profile.loss * 100.0,
        setup.tracks,
        BIG as f64 / 1e6
    );
    let all: Vec<&Figures> = std::iter::once(&musicfs.figures).chain(peers).collect();
    let mut header = format!("{:<40}", "work");
    for f in &all {
        header += &format!(" {:>26}", f.tool);
    }
    println!("{header}");
    let line = |name: &str, cell: &dyn Fn(&Figures) -> String| {
        let mut text = format!("{name:<40}");
        for f in &all {
            text += &format!(" {:>26}", cell(f));
        }
        println!("{text}");
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
        "{:<40} {:>26}",
        "MusicFS restart: list every file",
        musicfs.relist.cell()
    );
    println!(
        "  (its MB: the rescan of the unchanged library that follows, until the link is quiet)"
    );
    println!(
        "{:<40} {:>26}",
        format!("a track added, until shown (poll {} s)", setup.poll),
        musicfs.watch.cell()
    );
    let m = &musicfs.figures;
    for peer in peers {
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "MusicFS against {}: tagged library {:.1}x faster, seek {:.2}x, cold read {:.2}x (above 1 is faster)",
            peer.tool,
            ratio(m.library.time, peer.library.time),
            ratio(m.seek.time, peer.seek.time),
            ratio(m.cold.time, peer.cold.time),
        );
    }
}

/// `tracks` tagged tracks and the three large ones, into `library`.
fn fill(library: &Path, tracks: usize) {
    tagged_library(library, tracks);
    for (name, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        noise_file(&library.join(format!("big/{name}.flac")), BIG, seed);
    }
}

/// SFTP: MusicFS, sshfs, rclone.
fn sftp(setup: &Setup, work: &Path) {
    let link = Link::new(setup.profile);
    let server = SshServer::start_at(link.site());
    fill(&server.library, setup.tracks);
    let mut origin = server.origin("seedbox");
    origin.insert("request_timeout_secs".into(), 30i64.into());
    let none: Requests = &|| None;
    let musicfs = measure_musicfs(
        setup,
        &link,
        work,
        "musicfs_sftp",
        origin,
        &server.library,
        none,
    );
    if !setup.peers {
        return;
    }
    let addr = server.site.addr.to_string();
    let sshfs = measure_peer("sshfs", &link, none, || {
        PeerMount::sshfs(
            &addr,
            server.port,
            &server.library,
            &server.client_key,
            &server.known_hosts,
            work,
        )
    });
    let flags = rclone_sftp_flags(&server);
    let remote = format!(":sftp:{}", server.library.display());
    let rclone = measure_peer("rclone", &link, none, || {
        PeerMount::rclone_remote(&remote, &flags, work)
    });
    report(setup, "SFTP (OpenSSH sshd)", &musicfs, &[sshfs, rclone]);
}

/// S3: MusicFS, rclone; GETs counted by the server.
fn s3(setup: &Setup, work: &Path) {
    let link = Link::new(setup.profile);
    let server = S3Server::start_at(link.site(), Some(&work.join("s3-requests.log")));
    let library = server.object_path("lib");
    fill(&library, setup.tracks);
    let gets = || {
        Some(
            server
                .request_counts()
                .get("GetObject")
                .copied()
                .unwrap_or(0),
        )
    };
    let musicfs = measure_musicfs(
        setup,
        &link,
        work,
        "musicfs_s3",
        server.origin("bucket", "lib"),
        &library,
        &gets,
    );
    if !setup.peers {
        return;
    }
    let flags = rclone_s3_flags(&server);
    let remote = format!(":s3:{BUCKET}/lib");
    let rclone = measure_peer("rclone", &link, &gets, || {
        PeerMount::rclone_remote(&remote, &flags, work)
    });
    report(setup, "S3 (s3s-fs)", &musicfs, &[rclone]);
}

fn main() {
    let profile_name = std::env::var("BENCH_LINK").unwrap_or_else(|_| "wan".into());
    let profile = Profile::named(&profile_name).expect("BENCH_LINK is lan, wan or far");
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(default)
    };
    let setup = Setup {
        profile_name,
        profile,
        tracks: number("BENCH_TRACKS", 2000),
        poll: number("BENCH_POLL_SECS", 10) as i64,
        peers: std::env::var("BENCH_PEERS").map_or(true, |v| v != "0"),
    };
    let kinds = std::env::var("BENCH_KINDS").unwrap_or_else(|_| "sftp,s3".into());
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    for kind in kinds.split(',') {
        let dir = work.path().join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        match kind {
            "sftp" => sftp(&setup, &dir),
            "s3" => s3(&setup, &dir),
            other => panic!("BENCH_KINDS: {other} is not sftp or s3"),
        }
    }
}
