//! SIGKILL in the middle of work: during the first scan, and during cold reads
//! of several files at once. After a restart every track is there, every byte
//! reads right, and `user.musicfs.cached` tells the truth offline.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lofty::config::WriteOptions;
use lofty::prelude::{Accessor, TagExt};
use lofty::tag::{Tag, TagType};
use musicfs_tests::audio_library::{ffmpeg, files_below};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

use super::{matrix_row, track, wait_for_scans, wrong_bytes};

/// Kills the daemon and clears the dead mountpoint it leaves.
fn kill(mount: Mounted) {
    let mountpoint = mount.mountpoint.clone();
    mount.kill();
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(&mountpoint)
        .status();
}

fn chunk_files(cache: &Path) -> usize {
    musicfs_tests::chunk_packs::records(cache).len()
}

#[test]
fn killed_during_the_first_scan_loses_no_track() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let seed = work.path().join("seed.flac");
    track(&seed, "Killed", "Scan", 1, "Seed");
    let tracks: usize = 400;
    // Each its own title, so each has its own tag chunks (the progress the kill
    // waits for) and its own name in the tree.
    let source_of = |n: usize| source.join(format!("{:02}/{n:03}.flac", n / 40));
    for n in 0..tracks {
        std::fs::create_dir_all(source_of(n).parent().unwrap()).unwrap();
        std::fs::copy(&seed, source_of(n)).unwrap();
        let mut tag = Tag::new(TagType::VorbisComments);
        tag.set_title(format!("T{n:03}"));
        tag.set_artist("Killed".into());
        tag.set_album("Scan".into());
        tag.save_to_path(source_of(n), WriteOptions::default())
            .unwrap();
    }
    let fault = work.path().join("fault");
    let args = musicfs_tests::faulty_folder_config(work.path(), "slow", &source, &fault, "");
    let cache = work.path().join("cache");

    // Reads take 50 ms each: the scan takes seconds; kill it once it has stored
    // the tags of a few files.
    std::fs::write(&fault, "slow-reads").unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, None);
    mount.wait_until(Duration::from_secs(60), |_| chunk_files(&cache) >= 10);
    assert!(
        !mount.log().contains("scan finished"),
        "the scan ended before the kill"
    );
    kill(mount);

    std::fs::remove_file(&fault).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, None);
    wait_for_scans(&mount, 1);
    let shown = files_below(&mount.mountpoint);
    let lost = tracks.saturating_sub(shown.len());
    let mut wrong = 0;
    for n in (0..tracks).step_by(37) {
        let got = std::fs::read(mount.path(&format!("Killed/Scan/T{n:03}.flac"))).unwrap();
        wrong += wrong_bytes(&got, &std::fs::read(source_of(n)).unwrap());
    }
    assert_eq!(shown.len(), tracks, "{shown:?}");
    assert_eq!(wrong, 0);
    assert!(mount.alive());
    matrix_row("SIGKILL during the first scan", tracks, wrong, 0, 0, lost);
}

#[test]
fn killed_during_parallel_cold_reads_serves_every_byte_right_after() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let files = 6;
    for i in 0..files {
        let title = format!("Noise {i}");
        let tags = [
            ("title", title.as_str()),
            ("artist", "Killed"),
            ("album", "Reads"),
        ];
        ffmpeg(
            &format!("anoisesrc=duration=40:seed={i}"),
            &tags,
            &[],
            &source.join(format!("n{i}.flac")),
        );
    }
    let shown = |i: usize| format!("Killed/Reads/Noise {i}.flac");
    let originals: Vec<Vec<u8>> = (0..files)
        .map(|i| std::fs::read(source.join(format!("n{i}.flac"))).unwrap())
        .collect();
    let original = |i: usize| originals[i].as_slice();
    let fault = work.path().join("fault");
    let args = musicfs_tests::faulty_folder_config(work.path(), "slow", &source, &fault, "");
    let cache = work.path().join("cache");

    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    wait_for_scans(&mount, 1);
    std::fs::write(&fault, "slow-reads").unwrap();
    let read_so_far = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..files)
        .map(|i| {
            let (path, read_so_far) = (mount.path(&shown(i)), read_so_far.clone());
            std::thread::spawn(move || {
                let mut file = std::fs::File::open(path)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    read_so_far.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    mount.wait_until(Duration::from_secs(60), |_| {
        read_so_far.load(Ordering::Relaxed) > 2 << 20
    });
    let inodes: Vec<u64> = (0..files)
        .map(|i| std::fs::metadata(mount.path(&shown(i))).unwrap().ino())
        .collect();
    kill(mount);
    let interrupted = readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(Result::is_err)
        .count();
    assert!(interrupted > 0, "every read had finished before the kill");

    std::fs::remove_file(&fault).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    let after: Vec<u64> = (0..files)
        .map(|i| std::fs::metadata(mount.path(&shown(i))).unwrap().ino())
        .collect();
    assert_eq!(after, inodes, "the kill cost the index its inode numbers");
    let damaged = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".damaged-")
        })
        .count();
    assert_eq!(damaged, 0, "the kill damaged the index");
    let mut wrong = 0;
    for i in 0..files {
        wrong += wrong_bytes(&std::fs::read(mount.path(&shown(i))).unwrap(), original(i));
    }
    assert_eq!(wrong, 0);
    mount.stop();

    // Offline, the cached attribute tells the truth about each file.
    std::fs::rename(&source, work.path().join("gone")).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    for i in 0..files {
        let cached = xattr(&mount.path(&shown(i)), "user.musicfs.cached").unwrap();
        match std::fs::read(mount.path(&shown(i))) {
            Ok(bytes) => wrong += wrong_bytes(&bytes, original(i)),
            Err(e) => assert_ne!(cached, "yes", "said cached, failed offline: {e}"),
        }
    }
    assert_eq!(wrong, 0);
    matrix_row(
        "SIGKILL during 6 parallel cold reads, then offline",
        files,
        wrong,
        0,
        0,
        0,
    );
}
