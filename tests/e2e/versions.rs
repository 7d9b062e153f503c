//! A file rewritten in place on its origin (the same size, its mtime put back),
//! between reads and in the middle of one. Every read returns one version whole
//! (or fails), never old chunks spliced with new bytes, and the mount shows the
//! new version soon after.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;

/// Rewrites `path` with `bytes` (same length) in place and puts its mtime back.
fn rewrite_in_place(path: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// The same file with its second half's bytes changed: same size, same tags.
fn second_version(first: &[u8]) -> Vec<u8> {
    let half = first.len() / 2;
    first
        .iter()
        .enumerate()
        .map(|(i, b)| if i >= half { !b } else { *b })
        .collect()
}

/// What a whole read of the mount's file was.
#[derive(Debug, PartialEq)]
enum Seen {
    Old,
    New,
    Failed,
}

fn read_whole(path: &Path, old: &[u8], new: &[u8]) -> Seen {
    match std::fs::read(path) {
        Ok(bytes) if bytes == old => Seen::Old,
        Ok(bytes) if bytes == new => Seen::New,
        Ok(bytes) => panic!(
            "a read mixed versions: {} of {} bytes like the old one",
            bytes.iter().zip(old).filter(|(a, b)| a == b).count(),
            bytes.len()
        ),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            Seen::Failed
        }
    }
}

/// Reads until the mount shows `new`; every read on the way is one version whole.
fn until_new(mount: &Mounted, shown: &str, old: &[u8], new: &[u8]) -> Vec<Seen> {
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let now = read_whole(&mount.path(shown), old, new);
        let done = now == Seen::New;
        seen.push(now);
        if done {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new version never showed: {seen:?}\n{}",
            mount.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_file_rewritten_in_place_is_read_as_one_version_whole() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    for (name, title) in [("between.flac", "Between"), ("during.flac", "During")] {
        let tags = [
            ("title", title),
            ("artist", "Rewritten"),
            ("album", "In Place"),
        ];
        ffmpeg("anoisesrc=duration=20", &tags, &[], &source.join(name));
    }
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some("Rewritten/In Place/During.flac"),
    );

    // Between reads: cached whole, then rewritten.
    let shown = "Rewritten/In Place/Between.flac";
    let old = std::fs::read(source.join("between.flac")).unwrap();
    let new = second_version(&old);
    assert_eq!(std::fs::read(mount.path(shown)).unwrap(), old);
    rewrite_in_place(&source.join("between.flac"), &new);
    let seen = until_new(&mount, shown, &old, &new);
    println!("between reads: {seen:?}");

    // During a read: the head read, the file rewritten, the rest read.
    let shown = "Rewritten/In Place/During.flac";
    let old = std::fs::read(source.join("during.flac")).unwrap();
    let new = second_version(&old);
    let mut reader = std::fs::File::open(mount.path(shown)).unwrap();
    let mut got = vec![0u8; 200_000];
    reader.read_exact(&mut got).unwrap();
    rewrite_in_place(&source.join("during.flac"), &new);
    let mut rest = Vec::new();
    let ended = reader.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    match &ended {
        // Read-ahead had fetched it all before the rewrite: the old one, whole.
        Ok(_) => assert!(
            got == old,
            "a read mixed versions (it ended without an error)"
        ),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            assert!(
                got.len() < old.len() && got == old[..got.len()],
                "a read mixed versions"
            );
        }
    }
    println!(
        "during a read: {} bytes of the old version, then {ended:?}",
        got.len()
    );
    drop(reader);
    let seen = until_new(&mount, shown, &old, &new);
    println!("after: {seen:?}");
    assert!(
        std::fs::read(mount.path(shown)).unwrap() == new,
        "the new version, whole"
    );
}
