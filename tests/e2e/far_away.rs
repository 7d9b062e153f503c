//! Origins far away: real servers behind an emulated link
//! (`musicfs_tests::link`) with the delay, rate and loss of the issue's
//! profiles. The tests assert what crossed the link (bytes, packets), what the
//! origins were asked, and outcomes; never how long anything took.

use std::path::Path;
use std::time::Duration;

use musicfs_tests::bench_support::{tagged_library, tagged_track_shown};
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

/// The file a [`tagged_library`] of more tracks has as track `i`, copied into
/// `library` (a track added on the server).
fn add_tagged_track(library: &Path, i: usize) {
    let more = tempfile::tempdir().unwrap();
    tagged_library(more.path(), i + 1);
    let rel = format!(
        "artist{:05}/album{:06}/{:02}.flac",
        i / 200,
        i / 20,
        i % 20 + 1
    );
    let to = library.join(&rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    // Written beside it and renamed, as an upload tool would.
    let part = to.with_extension("part");
    std::fs::copy(more.path().join(&rel), &part).unwrap();
    std::fs::rename(part, to).unwrap();
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
