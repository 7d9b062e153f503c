//! The mount, for real: a generated library of real audio files, mounted by the
//! `musicfs` binary with the local plugin `.so`, read with ordinary file calls.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::audio_library::{self, copy_tree, ffprobe_accepts, files_below, TRACKS};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

fn origin_arg(dir: &Path) -> Vec<String> {
    vec!["--origin".into(), format!("local:{}", dir.display())]
}

#[test]
fn the_tree_follows_the_layout_and_every_file_reads_back_identical() {
    let source = audio_library::shared();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let mount = Mounted::start(
        work.path(),
        &cache,
        &origin_arg(source),
        Some(TRACKS[0].shown_as),
    );

    let mut expected: Vec<String> = TRACKS.iter().map(|t| t.shown_as.to_owned()).collect();
    expected.push("Solo/Numbers/cover.jpg".into());
    expected.sort();
    assert_eq!(files_below(&mount.mountpoint), expected, "{}", mount.log());

    for track in TRACKS {
        let shown = mount.path(track.shown_as);
        let original = std::fs::read(source.join(track.source)).unwrap();
        assert_eq!(
            std::fs::read(&shown).unwrap(),
            original,
            "{} differs through the mount",
            track.shown_as
        );
        assert!(
            ffprobe_accepts(&shown),
            "ffprobe refuses {}",
            track.shown_as
        );
    }
    assert_eq!(
        std::fs::read(mount.path("Solo/Numbers/cover.jpg")).unwrap(),
        std::fs::read(source.join("a/cover.jpg")).unwrap()
    );

    // Read-only: writing anything fails with EROFS.
    let err = std::fs::write(mount.path("Solo/new.flac"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(mount.path(TRACKS[0].shown_as)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // Where a file comes from, as extended attributes.
    let track = mount.path(TRACKS[0].shown_as);
    assert_eq!(
        xattr(&track, "user.musicfs.origin").as_deref(),
        Some("local")
    );
    assert_eq!(
        xattr(&track, "user.musicfs.path").as_deref(),
        Some(TRACKS[0].source)
    );
    assert_eq!(xattr(&track, "user.musicfs.cached").as_deref(), Some("yes"));

    // As root, the kernel reads ahead by whole windows, not FUSE's 128 KiB.
    if unsafe { libc::geteuid() } == 0 {
        let dev = std::fs::metadata(&mount.mountpoint).unwrap().dev();
        let setting = musicfs::fs::read_ahead::setting_of(dev);
        assert_eq!(
            std::fs::read_to_string(&setting).unwrap().trim(),
            musicfs::config::DEFAULT_READ_AHEAD_KB.to_string(),
            "{}\n{}",
            setting.display(),
            mount.log()
        );
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn ranged_reads_at_random_offsets_and_beyond_four_gib() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(audio_library::shared(), source.path());
    // A file over 4 GiB: sparse, with known bytes scattered through it.
    let big = source.path().join("big/huge.flac");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let size = (5u64 << 30) + 4321;
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(size).unwrap();
    let marks: Vec<u64> = vec![
        0,
        1 << 20,
        (4u64 << 30) - 3,
        4u64 << 30,
        (4u64 << 30) + 77_777,
        size - 100,
    ];
    for (i, at) in marks.iter().enumerate() {
        file.write_all_at(format!("mark-{i}-at-{at}").as_bytes(), *at)
            .unwrap();
    }
    drop(file);

    let work = tempfile::tempdir().unwrap();
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &origin_arg(source.path()),
        Some(TRACKS[0].shown_as),
    );
    let shown = mount.path("Unknown Artist/Unknown Album/huge.flac");
    mount.wait_until(Duration::from_secs(20), |_| shown.exists());
    assert_eq!(std::fs::metadata(&shown).unwrap().len(), size);

    let through = std::fs::File::open(&shown).unwrap();
    let direct = std::fs::File::open(&big).unwrap();
    let compare = |offset: u64, len: usize| {
        let mut a = vec![0u8; len];
        let mut b = vec![0u8; len];
        let n = through.read_at(&mut a, offset).unwrap();
        let m = direct.read_at(&mut b, offset).unwrap();
        assert_eq!(n, m, "length at {offset}");
        assert!(a[..n] == b[..m], "bytes differ at {offset}+{len}");
    };
    for at in &marks {
        compare(*at, 64);
    }
    compare(size - 10, 100); // across the end

    // Random ranges of a real track.
    let track = mount.path(TRACKS[0].shown_as);
    let original = std::fs::read(audio_library::shared().join(TRACKS[0].source)).unwrap();
    let file = std::fs::File::open(&track).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let offset = (xorshift(&mut state) % original.len() as u64) as usize;
        let len = 1 + (xorshift(&mut state) % 70_000) as usize;
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, offset as u64).unwrap();
        let end = (offset + len).min(original.len());
        assert_eq!(&buf[..n], &original[offset..end], "range {offset}+{len}");
    }

    // A seek to the middle of the big file did not download what lies before it.
    let cached = xattr(&shown, "user.musicfs.cached").unwrap();
    assert!(cached.starts_with("partial"), "{cached}");
    let cached_bytes: u64 = cached.split(['(', ' ']).nth(2).unwrap().parse().unwrap();
    assert!(
        cached_bytes < 64 << 20,
        "{cached_bytes} bytes cached for a few small reads"
    );
}

fn inodes_and_mtimes(root: &Path) -> BTreeMap<String, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            out.insert(
                path.strip_prefix(root).unwrap().display().to_string(),
                (meta.ino(), meta.mtime(), meta.mtime_nsec()),
            );
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn a_restart_keeps_inodes_and_serves_cached_files_offline() {
    let source = tempfile::tempdir().unwrap();
    let music = source.path().join("music");
    copy_tree(audio_library::shared(), &music);
    // One more track, big enough that reading its head leaves its body uncached.
    let long = music.join("long/long.flac");
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    let tags = [("title", "Long"), ("artist", "Noise"), ("album", "Static")];
    audio_library::ffmpeg("anoisesrc=duration=20:sample_rate=44100", &tags, &[], &long);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");

    let first = Mounted::start(
        work.path(),
        &cache,
        &origin_arg(&music),
        Some("Noise/Static/Long.flac"),
    );
    for track in TRACKS {
        std::fs::read(first.path(track.shown_as)).unwrap();
    }
    let before = inodes_and_mtimes(&first.mountpoint);
    let log = first.stop();
    assert!(log.contains("mnt unmounted"), "{log}");

    // The origin disappears; the restart mounts from the index at once.
    std::fs::rename(&music, source.path().join("gone")).unwrap();
    let started = Instant::now();
    let second = Mounted::start(work.path(), &cache, &origin_arg(&music), None);
    let ls = std::fs::read_dir(&second.mountpoint).unwrap().count();
    let took = started.elapsed();
    assert!(ls > 0, "the root is empty after a restart");
    println!("restart to a listed root: {took:?}");
    assert_eq!(
        inodes_and_mtimes(&second.mountpoint),
        before,
        "inodes or mtimes changed across the restart"
    );

    let gone = source.path().join("gone");
    for track in TRACKS {
        let through = std::fs::read(second.path(track.shown_as)).unwrap();
        assert_eq!(
            through,
            std::fs::read(gone.join(track.source)).unwrap(),
            "{} offline",
            track.shown_as
        );
    }
    // The scan stored the tag head as chunks: a music server re-reading tags through
    // the mount needs no origin, though the track was never played.
    let file = std::fs::File::open(second.path("Noise/Static/Long.flac")).unwrap();
    let mut head = vec![0u8; 64 * 1024];
    file.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(
        &head[..],
        &std::fs::read(gone.join("long/long.flac")).unwrap()[..64 * 1024]
    );
    // Uncached bytes fail fast with EIO, not a hang.
    let size = file.metadata().unwrap().len();
    let started = Instant::now();
    let err = file.read_at(&mut [0u8; 4096], size / 2).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "EIO took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_corrupt_chunk_is_fetched_again_not_served() {
    let source = audio_library::shared();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let track = &TRACKS[0];
    let original = std::fs::read(source.join(track.source)).unwrap();

    let first = Mounted::start(
        work.path(),
        &cache,
        &origin_arg(source),
        Some(track.shown_as),
    );
    assert_eq!(std::fs::read(first.path(track.shown_as)).unwrap(), original);
    first.stop();

    // Flip a byte in every chunk on disk.
    let mut corrupted = 0;
    for record in musicfs_tests::chunk_packs::records(&cache) {
        musicfs_tests::chunk_packs::flip(&record, 0);
        corrupted += 1;
    }
    assert!(corrupted > 0);
    // A whole copy made from the chunks before they rotted would be read
    // instead of them (as root): this test is about the chunks.
    let _ = std::fs::remove_dir_all(cache.join("whole"));

    let second = Mounted::start(
        work.path(),
        &cache,
        &origin_arg(source),
        Some(track.shown_as),
    );
    let read = std::fs::read(second.path(track.shown_as))
        .unwrap_or_else(|e| panic!("{e}; daemon log:\n{}", second.log()));
    assert_eq!(read, original, "corrupt bytes were served");
    assert!(
        second.log().contains("chunk is corrupt"),
        "{}",
        second.log()
    );
}

#[test]
fn a_mountpoint_left_by_a_killed_daemon_is_reported_with_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let first = Mounted::start(
        work.path(),
        &cache,
        &origin_arg(audio_library::shared()),
        Some(TRACKS[0].shown_as),
    );
    let mountpoint = first.mountpoint.clone();
    first.kill();

    let out = std::process::Command::new(musicfs_tests::musicfs_binary())
        .args(["mount", "--plugins"])
        .arg(work.path().join("plugins"))
        .arg("--cache-dir")
        .arg(&cache)
        .args(origin_arg(audio_library::shared()))
        .arg(&mountpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("fusermount3 -u {}", mountpoint.display())),
        "{stderr}"
    );
    let cleared = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&mountpoint)
        .status()
        .unwrap();
    assert!(cleared.success());
}

#[test]
fn interrupting_with_a_file_open_leaves_no_dead_mountpoint() {
    let work = tempfile::tempdir().unwrap();
    let origin = origin_arg(audio_library::shared());
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &origin,
        Some(TRACKS[0].shown_as),
    );
    let mountpoint = mount.mountpoint.clone();
    let open = std::fs::File::open(mount.path(TRACKS[0].shown_as)).unwrap();
    let log = mount.stop();
    assert!(log.contains("detached (files were still open)"), "{log}");
    drop(open);
    assert!(
        !musicfs::mount::mountpoint::is_mounted(&mountpoint),
        "the mountpoint is left behind"
    );
    assert!(
        std::fs::read_dir(&mountpoint).is_ok(),
        "the mountpoint is usable again"
    );
}
