//! Far away, side by side in one run: an SFTP origin (a real OpenSSH `sshd`)
//! served by MusicFS, `sshfs` and `rclone mount --vfs-cache-mode full`; an
//! S3 bucket (a real `s3s-fs`) served by MusicFS and rclone; an NFS export (a
//! real nfs-ganesha) served by MusicFS and read by libnfs's `nfs-cat` and
//! `nfs-ls`; an SMB share (a real Samba `smbd`) served by MusicFS and read by
//! `smbclient`: each behind an emulated link (`musicfs_tests::link`,
//! `BENCH_LINK` = `lan`, `wan` (default) or `far`). `BENCH_KINDS` picks them
//! (`sftp,s3,nfs,smb`). The kernel-free clients neither mount nor seek: their
//! rows are the first 4 KiB, a whole read and a listing. The library: `BENCH_TRACKS`
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
//! (as root: the link needs a network namespace; needs sshd, sshfs, rclone,
//! nfs-ganesha, libnfs-utils, samba and smbclient).

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

/// The rows of one tool (`None` where it cannot do that work: the
/// kernel-free NFS and SMB clients neither mount nor seek).
struct Figures {
    tool: &'static str,
    library: Option<Row>,
    head: Option<Row>,
    seek: Option<Row>,
    cold: Row,
    list: Option<Row>,
}

/// A cell of an optional row.
fn cell(row: &Option<Row>) -> String {
    row.as_ref().map_or("-".into(), Row::cell)
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
        library: Some(library),
        head: Some(head),
        seek: Some(seek),
        cold,
        list: Some(list),
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
            cell(&f.library),
            cell(&f.head),
            cell(&f.seek),
            f.cold.cell(),
            cell(&f.list),
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

/// [`measure_musicfs`] of a server that counts no requests, with a
/// request timeout of 30 s (the link's faults are not what is measured).
fn measure_uncounted(
    setup: &Setup,
    link: &Link,
    work: &Path,
    plugin: &str,
    mut origin: toml::Table,
    library: &Path,
) -> MusicFs {
    origin.insert("request_timeout_secs".into(), 30i64.into());
    measure_musicfs(setup, link, work, plugin, origin, library, &|| None)
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
    line("a tagged library", &|f| cell(&f.library));
    line("first 4 KiB of an unplayed track", &|f| cell(&f.head));
    line("then a seek to its middle + 4 KiB", &|f| cell(&f.seek));
    line("cold sequential read", &|f| f.cold.cell());
    line("  MB/s (share of the link)", &|f| {
        let rate = BIG as f64 / f.cold.time.as_secs_f64() / 1e6;
        format!("{rate:.1} ({:.2})", rate / link_mb_s)
    });
    line("list every file", &|f| cell(&f.list));
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
        // How many times faster MusicFS was, where both did the work.
        let ratio = |a: &Option<Row>, b: &Option<Row>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", b.time.as_secs_f64() / a.time.as_secs_f64()),
            _ => "-".into(),
        };
        println!(
            "MusicFS against {}: tagged library {}, first 4 KiB {}, seek {}, cold read {}, list {} (above 1 is faster)",
            peer.tool,
            ratio(&m.library, &peer.library),
            ratio(&m.head, &peer.head),
            ratio(&m.seek, &peer.seek),
            ratio(&Some(m.cold), &Some(peer.cold)),
            ratio(&m.list, &peer.list),
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
    let musicfs = measure_uncounted(
        setup,
        &link,
        work,
        "musicfs_sftp",
        server.origin("seedbox"),
        &server.library,
    );
    if !setup.peers {
        return;
    }
    let addr = server.site.addr.to_string();
    let sshfs = measure_peer("sshfs", &link, &|| None, || {
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
    let rclone = measure_peer("rclone", &link, &|| None, || {
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
    let gets = || Some(server.gets());
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

/// What a kernel-free client (`nfs-cat`, `smbclient`) can be measured
/// doing: `head` runs a command that prints a.flac and is stopped after its
/// first 4 KiB (the time to them, and what crossed meanwhile); `cold` one
/// that reads b.flac whole; `list` one that lists every file.
fn measure_client(
    tool: &'static str,
    link: &Link,
    head: std::process::Command,
    cold: std::process::Command,
    list: std::process::Command,
) -> Figures {
    use std::io::Read;
    use std::process::Stdio;
    let run = |mut command: std::process::Command, first: Option<u64>| {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = out.read(&mut buf).unwrap();
            total += n as u64;
            if n == 0 || first.is_some_and(|f| total >= f) {
                break;
            }
        }
        if first.is_some() {
            let _ = child.kill();
            let _ = child.wait();
        } else {
            let done = child.wait_with_output().unwrap();
            assert!(
                done.status.success(),
                "{tool} failed: {}",
                String::from_utf8_lossy(&done.stderr)
            );
        }
        total
    };
    let head_row = row(link, || {
        assert!(
            run(head, Some(4096)) >= 4096,
            "{tool} printed less than 4 KiB"
        );
    });
    let cold_row = row(link, || {
        run(cold, None);
    });
    let list_row = row(link, || {
        run(list, None);
    });
    Figures {
        tool,
        library: None,
        head: Some(head_row),
        seek: None,
        cold: cold_row,
        list: Some(list_row),
    }
}

/// NFS (nfs-ganesha, NFSv4: the namespace has no portmapper): MusicFS, and
/// libnfs's `nfs-cat` and `nfs-ls`.
fn nfs(setup: &Setup, work: &Path) {
    use musicfs_tests::nfs_server::NfsServer;
    let link = Link::new(setup.profile);
    let server = NfsServer::start_at(link.site());
    fill(&server.library, setup.tracks);
    let musicfs = measure_uncounted(
        setup,
        &link,
        work,
        "musicfs_nfs",
        server.origin("nas", 4),
        &server.library,
    );
    if !setup.peers {
        return;
    }
    let url = |path: &str| {
        format!(
            "nfs://{}{}{path}?version=4&nfsport={}",
            server.site.addr, server.pseudo, server.port
        )
    };
    let command = |tool: &str, args: &[String]| {
        let mut command = std::process::Command::new(tool);
        command.args(args);
        command
    };
    let client = measure_client(
        "nfs-cat, nfs-ls",
        &link,
        command("nfs-cat", &[url("/big/a.flac")]),
        command("nfs-cat", &[url("/big/b.flac")]),
        command("nfs-ls", &["-R".into(), url("/")]),
    );
    report(setup, "NFS (nfs-ganesha, NFSv4)", &musicfs, &[client]);
}

/// SMB (Samba's smbd): MusicFS, and `smbclient` (signing in for each
/// command, as it does).
fn smb(setup: &Setup, work: &Path) {
    use musicfs_tests::smb_server::{Encryption, SmbServer, PASSWORD, SHARE, USER};
    let link = Link::new(setup.profile);
    let server = SmbServer::start_at(link.site(), Encryption::IfAsked);
    fill(&server.library, setup.tracks);
    let musicfs = measure_uncounted(
        setup,
        &link,
        work,
        "musicfs_smb",
        server.origin("share"),
        &server.library,
    );
    if !setup.peers {
        return;
    }
    let smbclient = |commands: &str| {
        let mut command = std::process::Command::new("smbclient");
        command
            .arg(format!("//{}/{SHARE}", server.site.addr))
            .args(["-p", &server.port.to_string()])
            .args(["-U", &format!("{USER}%{PASSWORD}")])
            .args(["-c", commands]);
        command
    };
    let client = measure_client(
        "smbclient",
        &link,
        smbclient("get big/a.flac -"),
        smbclient("get big/b.flac -"),
        smbclient("recurse; ls"),
    );
    report(setup, "SMB (Samba smbd)", &musicfs, &[client]);
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
    let kinds = std::env::var("BENCH_KINDS").unwrap_or_else(|_| "sftp,s3,nfs,smb".into());
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    for kind in kinds.split(',') {
        let dir = work.path().join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        match kind {
            "sftp" => sftp(&setup, &dir),
            "s3" => s3(&setup, &dir),
            "nfs" => nfs(&setup, &dir),
            "smb" => smb(&setup, &dir),
            other => panic!("BENCH_KINDS: {other} is not sftp, s3, nfs or smb"),
        }
    }
}
