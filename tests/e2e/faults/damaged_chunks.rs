//! Every chunk file damaged: a third with a byte flipped, a third cut short, a
//! third deleted. With the origin, every read is right and the chunks come back;
//! without it, a read is right or fails, never wrong, and `user.musicfs.cached`
//! says `yes` only for what then reads whole.

use std::path::Path;

use musicfs_tests::audio_library::{ffmpeg, files_below};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

use super::{matrix_row, wrong_bytes};

fn damage_every_chunk(cache: &Path) -> usize {
    let chunks = files_below(&cache.join("chunks"));
    for (n, rel) in chunks.iter().enumerate() {
        let path = cache.join("chunks").join(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        match n % 3 {
            0 => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
            }
            1 => std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
    }
    chunks.len()
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
    assert!(damaged >= 3 * files);

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
        &format!("every chunk flipped, cut or deleted ({damaged} chunks of {files} files), with and without the origin"),
        damaged,
        wrong,
        0,
        0,
        0,
    );
}
