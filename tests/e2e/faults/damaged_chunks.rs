//! Chunks damaged on disk every way at once: a third of them with a byte
//! flipped, the audio pack cut short at two thirds (a torn tail), the tag pack
//! deleted. With the origin, every read is right and the chunks come back;
//! without it, a read is right or fails, never wrong, and `user.musicfs.cached`
//! says `yes` only for what then reads whole. Whole copies (made as root for
//! passthrough) are cut short too: a copy of the wrong length is dropped when
//! met, and the chunks behind it answer.

use std::path::Path;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::chunk_packs;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

use super::{matrix_row, wrong_bytes};

/// Damages the chunks of the cache at `cache`; returns how many it damaged.
fn damage_every_chunk(cache: &Path) -> usize {
    let records = chunk_packs::records(cache);
    let mut damaged = 0;
    for (n, record) in records.iter().enumerate() {
        if n % 3 == 0 {
            chunk_packs::flip(record, record.len / 2);
            damaged += 1;
        }
    }
    for pack in chunk_packs::packs(cache) {
        let in_pack = records.iter().filter(|r| r.pack == pack).count();
        if chunk_packs::is_tag_pack(&pack) {
            std::fs::remove_file(&pack).unwrap();
            damaged += in_pack;
        } else {
            let len = std::fs::metadata(&pack).unwrap().len();
            let cut = len / 3 * 2;
            std::fs::File::options()
                .write(true)
                .open(&pack)
                .unwrap()
                .set_len(cut)
                .unwrap();
            damaged += records
                .iter()
                .filter(|r| r.pack == pack && r.data_at + r.len > cut)
                .count();
        }
    }
    // Cut short, a whole copy would be served wrong by the kernel; its
    // length is checked at each open.
    for copy in std::fs::read_dir(cache.join("whole")).into_iter().flatten() {
        let copy = copy.unwrap().path();
        let len = std::fs::metadata(&copy).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    damaged
}

#[test]
fn damaged_chunks_are_never_served() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let files = 4;
    for i in 0..files {
        let title = format!("Rot {i}");
        let tags = [
            ("title", title.as_str()),
            ("artist", "Bit"),
            ("album", "Rot"),
        ];
        ffmpeg(
            &format!("anoisesrc=duration=10:seed={}", i + 10),
            &tags,
            &[],
            &source.join(format!("r{i}.flac")),
        );
    }
    let originals: Vec<Vec<u8>> = (0..files)
        .map(|i| std::fs::read(source.join(format!("r{i}.flac"))).unwrap())
        .collect();
    let shown = |i: usize| format!("Bit/Rot/Rot {i}.flac");
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let cache = work.path().join("cache");

    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    for (i, original) in originals.iter().enumerate() {
        assert_eq!(&std::fs::read(mount.path(&shown(i))).unwrap(), original);
    }
    mount.stop();
    let damaged = damage_every_chunk(&cache);
    assert!(damaged >= files, "only {damaged} chunks damaged");

    // Without the origin: right bytes or an error, and the attribute's truth.
    let away = work.path().join("away");
    std::fs::rename(&source, &away).unwrap();
    let mut wrong = 0;
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    for (i, original) in originals.iter().enumerate() {
        // Deleted and cut chunks are seen before any read; rotten bytes when read.
        let before = xattr(&mount.path(&shown(i)), "user.musicfs.cached").unwrap();
        assert_ne!(
            before, "yes",
            "file {i} said cached with chunks deleted or cut"
        );
        match std::fs::read(mount.path(&shown(i))) {
            Ok(bytes) => wrong += wrong_bytes(&bytes, original),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        }
        let cached = xattr(&mount.path(&shown(i)), "user.musicfs.cached").unwrap();
        assert_ne!(
            cached, "yes",
            "file {i} said cached with its chunks damaged"
        );
    }
    assert!(mount.alive());
    mount.stop();

    // With the origin: every byte right, and cached again.
    std::fs::rename(&away, &source).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown(files - 1)));
    for (i, original) in originals.iter().enumerate() {
        wrong += wrong_bytes(&std::fs::read(mount.path(&shown(i))).unwrap(), original);
        let cached = xattr(&mount.path(&shown(i)), "user.musicfs.cached").unwrap();
        assert_eq!(cached, "yes", "file {i}");
    }
    assert_eq!(wrong, 0);
    matrix_row(
        &format!("chunks flipped, a pack cut, a pack deleted ({damaged} chunks of {files} files), with and without the origin"),
        damaged,
        wrong,
        0,
        0,
        0,
    );
}
