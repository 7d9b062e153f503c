//! The content cache stores identical content once and stays within its limit.

use std::time::Duration;

use musicfs_tests::audio_library::{self, TRACKS};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::{chunk_bytes, local_config};

#[test]
fn the_same_track_on_two_origins_is_stored_once() {
    // Origin B holds origin A's first track under another path (so not a replica).
    let a = audio_library::shared();
    let b = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(b.path().join("copy")).unwrap();
    std::fs::copy(
        a.join(TRACKS[0].source),
        b.path().join("copy/same-song.flac"),
    )
    .unwrap();
    let size = std::fs::metadata(a.join(TRACKS[0].source)).unwrap().len();

    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let args = [
        "--origin".to_owned(),
        format!("local:{}", a.display()),
        "--origin".to_owned(),
        format!("local:{}", b.path().display()),
    ];
    let twin = TRACKS[0].shown_as.replace(".flac", " (2).flac");
    let mount = Mounted::start(work.path(), &cache, &args, Some(&twin));
    let before = chunk_bytes(&cache);
    let one = std::fs::read(mount.path(TRACKS[0].shown_as)).unwrap();
    let other = std::fs::read(mount.path(&twin)).unwrap();
    assert_eq!(one, other);
    let added = chunk_bytes(&cache) - before;
    assert!(
        added <= size,
        "{added} bytes stored for two copies of a {size}-byte track"
    );
}

#[test]
fn the_cache_stays_within_its_limit() {
    let source = tempfile::tempdir().unwrap();
    // Four 600 KB tracks of noise, more than the 1 MB limit together.
    audio_library::noise_album(source.path(), "Limits", 4, 4);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let config = local_config(
        work.path(),
        "noise",
        source.path(),
        "[cache]\ncontent_cache_gb = 0.001\n",
    );
    let args = ["--config".to_owned(), config.display().to_string()];
    let mount = Mounted::start(work.path(), &cache, &args, Some("Hiss/Limits/Noise 3.flac"));
    let mut total = 0;
    for i in 0..4 {
        let through = std::fs::read(mount.path(&format!("Hiss/Limits/Noise {i}.flac"))).unwrap();
        assert_eq!(
            through,
            std::fs::read(source.path().join(format!("{i}.flac"))).unwrap()
        );
        total += through.len();
    }
    assert!(total > 2_000_000, "the tracks are only {total} bytes");
    // A read is answered as its bytes arrive, and they are stored behind it
    // (a put passes the limit before it evicts): the limit holds once the
    // last of them is stored.
    mount.wait_until(Duration::from_secs(30), |_| {
        chunk_bytes(&cache) <= 1_000_000
    });
}
