//! Origins far away: real servers behind an emulated link
//! (`musicfs_tests::link`) with the delay, rate and loss of the issue's
//! profiles. The tests assert what crossed the link (bytes, packets), what the
//! origins were asked, and outcomes; never how long anything took.

use std::path::Path;
use std::time::Duration;

use musicfs_tests::bench_support::{add_tagged_track, tagged_library, tagged_track_shown};
use musicfs_tests::link::{Link, Profile};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args_for, origins_config};
use musicfs_tests::ssh_server::SshServer;

/// `count` folders holding nothing the library shows: a walk must list each.
fn clutter(dir: &Path, count: usize) {
    for i in 0..count {
        let folder = dir.join(format!("extras/{i:04}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("notes.txt"), b"not music").unwrap();
    }
}

/// A library that takes longer to list one folder at a time than a call's
/// deadline (170 folders at 3 round trips each, 50 ms away: some 25 s against
/// 5 s) is watched all the same: watching starts at once, and a track added on
/// the server shows in the mount.
#[test]
fn watching_starts_on_a_library_slower_to_list_than_a_deadline() {
    let link = Link::new(Profile::WAN);
    let server = SshServer::start_at(link.site());
    tagged_library(&server.library, 200);
    clutter(&server.library, 150);

    let config = origins_config(vec![server.origin("seedbox")]);
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, "musicfs_sftp");
    let last = tagged_track_shown(199);
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(&last));
    // The scan is done: every track is there.
    mount.wait_until(Duration::from_secs(60), |m| {
        (0..200).all(|i| m.path(&tagged_track_shown(i)).exists())
    });

    add_tagged_track(&server.library, 200);
    let added = tagged_track_shown(200);
    // The poll interval is a second; this waits for the outcome, with room.
    mount.wait_until(Duration::from_secs(30), |m| m.path(&added).exists());
    let log = mount.stop();
    assert!(
        !log.contains("cannot watch for changes"),
        "watching failed to start: {log}"
    );
}

/// 50 ms away, a seek to the middle of an unplayed 21.5 MB track and a 4 KiB
/// read there move about the bytes asked for (at most 1 MiB crosses the link,
/// where a stream to the file's end moved 8.8 MB); played on from there, the
/// track arrives once, byte for byte.
#[test]
fn a_seek_far_away_moves_what_it_reads() {
    use musicfs_tests::bench_support::noise_file;
    use std::os::unix::fs::FileExt;

    let link = Link::new(Profile::WAN);
    let server = SshServer::start_at(link.site());
    let size: u64 = 21_500_000;
    noise_file(&server.library.join("big/track.flac"), size, 7);
    let source = std::fs::read(server.library.join("big/track.flac")).unwrap();
    let config = origins_config(vec![server.origin("seedbox")]);
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, "musicfs_sftp");
    let shown = "Unknown Artist/Unknown Album/track.flac";
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(shown));
    let file = std::fs::File::open(mount.path(shown)).unwrap();
    let before = link.settled();

    let middle = size / 2;
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, middle).unwrap();
    assert!(buf[..] == source[middle as usize..middle as usize + 4096]);
    let seek = link.settled() - before;
    assert!(
        seek.to_clients.bytes <= 1 << 20,
        "a 4 KiB read after a seek moved {} bytes over the link",
        seek.to_clients.bytes
    );

    // Played on from the seek to the end: each byte crosses once.
    let mut rest = vec![0u8; (size - middle) as usize];
    file.read_exact_at(&mut rest, middle).unwrap();
    assert!(rest[..] == source[middle as usize..]);
    let played = link.settled() - before;
    let overhead = played.to_clients.bytes as f64 / (size - middle) as f64;
    assert!(
        overhead < 1.08,
        "{} bytes crossed for {} read: {overhead:.3}x",
        played.to_clients.bytes,
        size - middle
    );
    drop(file);
    mount.stop();
}

/// Mounts the SFTP origin `seedbox` of `server`, health checked every second
/// (so incomplete scans are retried soon), and waits for `ready`.
fn mount_seedbox(server: &SshServer, work: &Path, ready: Option<&str>) -> Mounted {
    let mut config = origins_config(vec![server.origin("seedbox")]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    config.insert("health".into(), health.into());
    let args = mount_args_for(work, &config, "musicfs_sftp");
    Mounted::start(work, &work.join("cache"), &args, ready)
}

/// Whether every one of the first `count` tracks of a [`tagged_library`] shows.
fn all_tracks_shown(mount: &Mounted, count: usize) -> bool {
    (0..count)
        .rev()
        .all(|i| mount.path(&tagged_track_shown(i)).exists())
}

/// The health `musicfs status` gives the origin `seedbox`.
fn seedbox_health(mount: &Mounted) -> String {
    let status = musicfs_tests::status_of(&mount.mountpoint);
    status
        .origins
        .iter()
        .find(|o| o.id == "seedbox")
        .map(|o| o.health.clone())
        .unwrap_or_default()
}

const BIG: &str = "Unknown Artist/Unknown Album/a.flac";

/// An SFTP library behind a link: `tracks` tagged tracks and a noise track of
/// `size` bytes (`BIG`), mounted and scanned whole. Fields drop in order: the
/// mount, then the server, then the link.
struct Seedbox {
    mount: Mounted,
    _work: tempfile::TempDir,
    server: SshServer,
    link: Link,
    /// The noise track's bytes.
    source: Vec<u8>,
}

impl Seedbox {
    fn new(profile: Profile, tracks: usize, size: u64, seed: u64) -> Seedbox {
        let link = Link::new(profile);
        let server = SshServer::start_at(link.site());
        tagged_library(&server.library, tracks);
        let big = server.library.join("big/a.flac");
        musicfs_tests::bench_support::noise_file(&big, size, seed);
        let source = std::fs::read(big).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mount = mount_seedbox(&server, work.path(), Some(BIG));
        mount.wait_until(Duration::from_secs(60), |m| all_tracks_shown(m, tracks));
        Seedbox {
            mount,
            _work: work,
            server,
            link,
            source,
        }
    }
}

/// 150 ms away at 20 Mbit/s, losing 1% of packets and then 5%: the origin
/// opens and passes its health checks with no deadline missed, the library
/// scans whole, and reads (sequential and after a seek) are byte for byte.
#[test]
fn a_far_link_losing_packets_opens_scans_and_reads_exactly() {
    use musicfs_tests::bench_support::noise_file;
    use std::os::unix::fs::FileExt;

    let size = 3_000_000u64;
    let seedbox = Seedbox::new(Profile::FAR, 60, size, 3);
    let (mount, server, link) = (&seedbox.mount, &seedbox.server, &seedbox.link);
    let source = &seedbox.source;
    assert_eq!(seedbox_health(mount), "healthy");

    let through = std::fs::read(mount.path(BIG)).unwrap();
    assert!(through == *source, "a sequential read over 1% loss differs");

    link.set_loss(0.05);
    let drops_before = link.stats();
    // The first is cached now: a fresh file to read over 5% loss.
    noise_file(&server.library.join("big/b.flac"), size, 4);
    let other = "Unknown Artist/Unknown Album/b.flac";
    let source_b = std::fs::read(server.library.join("big/b.flac")).unwrap();
    mount.wait_until(Duration::from_secs(60), |m| m.path(other).exists());
    let b = std::fs::File::open(mount.path(other)).unwrap();
    let mut middle = vec![0u8; 64 << 10];
    b.read_exact_at(&mut middle, size / 2).unwrap();
    assert!(middle[..] == source_b[size as usize / 2..size as usize / 2 + (64 << 10)]);
    let through = std::fs::read(mount.path(other)).unwrap();
    assert!(through == source_b, "a read over 5% loss differs");
    let lost = link.stats() - drops_before;
    assert!(
        lost.to_clients.dropped + lost.to_servers.dropped > 0,
        "no packet was lost: {lost:?}"
    );
    let log = seedbox.mount.stop();
    for missed in ["took longer than", "timed out"] {
        assert!(
            !log.contains(missed),
            "a deadline was missed on a healthy far link: {log}"
        );
    }
}

/// The link is cut for 30 s in the middle of a read: the reader gets EIO
/// within its deadline rather than hanging, no track leaves the tree while the
/// origin is unreachable, and once the link is back the origin serves again
/// with no remount, byte for byte.
#[test]
fn a_cut_mid_read_fails_the_reader_in_time_and_loses_nothing() {
    use musicfs_tests::audio_library::files_below;

    let size = 21_500_000u64;
    let seedbox = Seedbox::new(Profile::WAN, 40, size, 5);
    let (mount, link, source) = (&seedbox.mount, &seedbox.link, &seedbox.source);
    let shown = files_below(&mount.mountpoint);

    let cut_at = std::time::Instant::now();
    mount.read_ends_when_interrupted(BIG, size, || link.cut());
    mount.wait_until(Duration::from_secs(60), |m| seedbox_health(m) != "healthy");
    assert_eq!(
        files_below(&mount.mountpoint),
        shown,
        "unreachable is not deleted"
    );
    // The cut lasts its 30 s (a fault of that length, not a wait for a result).
    std::thread::sleep(Duration::from_secs(30).saturating_sub(cut_at.elapsed()));
    assert_eq!(files_below(&mount.mountpoint), shown);
    link.restore();
    mount.wait_until(Duration::from_secs(60), |m| {
        std::fs::read(m.path(BIG)).is_ok_and(|bytes| bytes == *source)
    });
    assert_eq!(seedbox_health(mount), "healthy");
    assert_eq!(files_below(&mount.mountpoint), shown);
}

/// The link is cut for 30 s while the first scan lists and reads tags: the
/// scan that was hit keeps what it could not reach, and the library is whole
/// once the link is back, with no remount.
#[test]
fn a_cut_mid_scan_ends_with_the_whole_library() {
    let link = Link::new(Profile::WAN);
    let server = SshServer::start_at(link.site());
    tagged_library(&server.library, 600);
    clutter(&server.library, 200);
    let work = tempfile::tempdir().unwrap();
    let before = link.stats();
    let mount = mount_seedbox(&server, work.path(), None);
    // The scan is under way: listings and tag heads are crossing the link.
    mount.wait_until(Duration::from_secs(60), |_| {
        (link.stats() - before).to_clients.bytes > 300_000
    });
    link.cut();
    let scanned_whole_before_the_cut = all_tracks_shown(&mount, 600);
    std::thread::sleep(Duration::from_secs(30));
    link.restore();
    mount.wait_until(Duration::from_secs(120), |m| all_tracks_shown(m, 600));
    assert!(
        !scanned_whole_before_the_cut,
        "the scan ended before the cut: the test tested nothing"
    );
    let log = mount.stop();
    assert!(
        ["cannot list", "cannot scan", "tags not read yet"]
            .iter()
            .any(|hit| log.contains(hit)),
        "the cut did not reach the scan: {log}"
    );
}

/// The rate collapsing to 1 Mbit/s while a track plays: the player's read
/// and a seek after it are answered, byte for byte, within their deadlines
/// (a read past its deadline fails with EIO), though the stream before the
/// seek still runs: it keeps in flight what it measured the link to carry,
/// and the seek's requests wait behind that (with 4 MiB in flight, as
/// before, they waited behind half a minute of it); when the rate is back,
/// the rest of the track plays.
#[test]
fn a_collapsed_rate_still_answers_readers_exactly() {
    use musicfs_tests::bench_support::noise_file;
    use std::os::unix::fs::FileExt;

    let link = Link::new(Profile::WAN);
    let server = SshServer::start_at(link.site());
    let size = 8_000_000u64;
    noise_file(&server.library.join("big/a.flac"), size, 6);
    let source = std::fs::read(server.library.join("big/a.flac")).unwrap();
    let work = tempfile::tempdir().unwrap();
    // One connection: the seek's requests queue behind the stream's on it,
    // as they do on any connection the pool hands out while it is busy. A
    // read's deadline is 20 s: two reads of the stream before it take some
    // 4 s to cross at 1 Mbit/s, 4 MiB (as before) over 30 s.
    let mut origin = server.origin("seedbox");
    origin.insert("connections".into(), 1i64.into());
    origin.insert("request_timeout_secs".into(), 10i64.into());
    let mut config = origins_config(vec![origin]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    config.insert("health".into(), health.into());
    let args = mount_args_for(work.path(), &config, "musicfs_sftp");
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(BIG));
    let file = std::fs::File::open(mount.path(BIG)).unwrap();
    link.set_rate(1_000_000);
    let mut buf = vec![0u8; 256 << 10];
    file.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf[..] == source[1 << 20..(1 << 20) + (256 << 10)]);
    let mut small = vec![0u8; 4096];
    file.read_exact_at(&mut small, 6 << 20).unwrap();
    assert!(small[..] == source[6 << 20..(6 << 20) + 4096]);
    link.set_profile(Profile::WAN);
    let through = std::fs::read(mount.path(BIG)).unwrap();
    assert!(through == source);
    let log = mount.stop();
    assert!(!log.contains("took longer than"), "{log}");
}

/// Over `link`, the origin `origin` of plugin `plugin`, whose server keeps its
/// files in `library`: the library (100 tagged tracks and a 21.5 MB one)
/// scans whole; a seek to the middle of the unplayed large track and 4 KiB
/// there move at most 1 MiB over the link, and `requests()` (what the server
/// counts, if it does) grows by `seek_requests`; a track added on the server
/// shows in the mount.
fn scans_seeks_and_watches(
    link: &Link,
    plugin: &str,
    origin: toml::Table,
    library: &Path,
    requests: impl Fn() -> Option<usize>,
    seek_requests: usize,
) {
    use musicfs_tests::bench_support::noise_file;
    use std::os::unix::fs::FileExt;

    tagged_library(library, 100);
    let size = 21_500_000u64;
    noise_file(&library.join("big/a.flac"), size, 8);
    let source = std::fs::read(library.join("big/a.flac")).unwrap();
    let mut config = origins_config(vec![origin]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    config.insert("health".into(), health.into());
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, plugin);
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(BIG));
    mount.wait_until(Duration::from_secs(60), |m| all_tracks_shown(m, 100));

    let file = std::fs::File::open(mount.path(BIG)).unwrap();
    let before = link.settled();
    let asked = requests();
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, size / 2).unwrap();
    assert!(buf[..] == source[size as usize / 2..size as usize / 2 + 4096]);
    let seek = link.settled() - before;
    if let (Some(asked), Some(now)) = (asked, requests()) {
        assert_eq!(now - asked, seek_requests, "requests of a seek");
    }
    assert!(
        seek.to_clients.bytes <= 1 << 20,
        "{plugin}: a 4 KiB read after a seek moved {} bytes",
        seek.to_clients.bytes
    );

    add_tagged_track(library, 100);
    mount.wait_until(Duration::from_secs(30), |m| {
        m.path(&tagged_track_shown(100)).exists()
    });
    drop(file);
    mount.stop();
}

/// A bucket 50 ms away (a real `s3s-fs` behind the link): scanned, a seek in
/// one GET, watched by one flat listing a poll.
#[test]
fn a_bucket_far_away_scans_seeks_in_one_get_and_watches() {
    use musicfs_tests::s3_server::S3Server;
    let link = Link::new(Profile::WAN);
    let logs = tempfile::tempdir().unwrap();
    let server = S3Server::start_at(link.site(), Some(&logs.path().join("requests.log")));
    scans_seeks_and_watches(
        &link,
        "musicfs_s3",
        server.origin("bucket", "lib"),
        &server.object_path("lib"),
        || Some(server.gets()),
        1,
    );
}

/// An NFSv4 export 50 ms away (nfs-ganesha behind the link).
#[test]
fn an_nfs_export_far_away_scans_seeks_and_watches() {
    use musicfs_tests::nfs_server::NfsServer;
    let link = Link::new(Profile::WAN);
    let server = NfsServer::start_at(link.site());
    scans_seeks_and_watches(
        &link,
        "musicfs_nfs",
        server.origin("nas", 4),
        &server.library,
        || None,
        0,
    );
}

/// An SMB share 50 ms away (Samba's smbd behind the link).
#[test]
fn an_smb_share_far_away_scans_seeks_and_watches() {
    use musicfs_tests::smb_server::SmbServer;
    let link = Link::new(Profile::WAN);
    let server = SmbServer::start_at(link.site(), musicfs_tests::smb_server::Encryption::IfAsked);
    scans_seeks_and_watches(
        &link,
        "musicfs_smb",
        server.origin("share"),
        &server.library,
        || None,
        0,
    );
}
