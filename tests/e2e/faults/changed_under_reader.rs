//! A file cut short or grown while a reader is in the middle of it. The reader
//! gets bytes of the version it opened, then an error (where they are no longer
//! to be had) or the end of the file: never other bytes, never a hang. Once the
//! watch has seen the change, the mount shows the new version.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;

use super::{matrix_row, wrong_bytes};

/// Reads the rest of `file` until its end or an error; what it got, and the error.
fn read_rest(file: &mut std::fs::File) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
}

fn noise(path: &Path, title: &str, seconds: u32) {
    let tags = [
        ("title", title),
        ("artist", "Shifting"),
        ("album", "Ground"),
    ];
    ffmpeg(
        &format!("anoisesrc=duration={seconds}:seed={seconds}"),
        &tags,
        &[],
        path,
    );
}

#[test]
fn a_file_cut_short_or_grown_under_a_reader_never_gives_wrong_bytes() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    // Long enough (29 MB) that read-ahead has not fetched it all when it is cut.
    noise(&source.join("cut.flac"), "Cut", 200);
    noise(&source.join("grown.flac"), "Grown", 20);
    let (cut, grown) = ("Shifting/Ground/Cut.flac", "Shifting/Ground/Grown.flac");
    let old_cut = std::fs::read(source.join("cut.flac")).unwrap();
    let old_grown = std::fs::read(source.join("grown.flac")).unwrap();
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(grown));
    let mut wrong = 0;

    // Cut short in the middle of a read.
    let mut reader = std::fs::File::open(mount.path(cut)).unwrap();
    let mut head = vec![0u8; 300_000];
    reader.read_exact(&mut head).unwrap();
    let keep = 500_000;
    std::fs::File::options()
        .write(true)
        .open(source.join("cut.flac"))
        .unwrap()
        .set_len(keep)
        .unwrap();
    let (rest, error) = read_rest(&mut reader);
    head.extend_from_slice(&rest);
    wrong += wrong_bytes(&head, &old_cut);
    // Bytes of the old version, then EIO (the origin has no more), or the end of
    // the file once the mount has seen the cut (a local file reads the same).
    match &error {
        Some(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        None => assert!(
            head.len() == old_cut.len() || head.len() as u64 >= keep,
            "ended at {} of {} without an error",
            head.len(),
            old_cut.len()
        ),
    }
    println!(
        "cut under a reader: {} bytes of the old version, then {:?}",
        head.len(),
        error
    );
    mount.wait_until(Duration::from_secs(30), |m| {
        std::fs::metadata(m.path(cut)).is_ok_and(|meta| meta.len() == keep)
    });
    wrong += wrong_bytes(
        &std::fs::read(mount.path(cut)).unwrap(),
        &old_cut[..keep as usize],
    );

    // Grown in the middle of a read.
    let mut reader = std::fs::File::open(mount.path(grown)).unwrap();
    let mut head = vec![0u8; 300_000];
    reader.read_exact(&mut head).unwrap();
    let tail = vec![0xa5u8; 64 * 1024];
    std::fs::File::options()
        .append(true)
        .open(source.join("grown.flac"))
        .unwrap()
        .write_all(&tail)
        .unwrap();
    let (rest, error) = read_rest(&mut reader);
    head.extend_from_slice(&rest);
    // The version it opened, whole, or its bytes up to where they were no longer
    // to be had (the file is another version now), then EIO.
    match &error {
        Some(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        None => assert_eq!(head.len(), old_grown.len(), "the version it opened, whole"),
    }
    wrong += wrong_bytes(&head, &old_grown);
    let new_grown = [old_grown.as_slice(), tail.as_slice()].concat();
    mount.wait_until(Duration::from_secs(30), |m| {
        std::fs::metadata(m.path(grown)).is_ok_and(|meta| meta.len() == new_grown.len() as u64)
    });
    wrong += wrong_bytes(&std::fs::read(mount.path(grown)).unwrap(), &new_grown);

    assert_eq!(wrong, 0);
    assert!(mount.alive());
    matrix_row("a file cut short / grown under a reader", 2, wrong, 0, 0, 0);
}
