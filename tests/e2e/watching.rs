//! Changes in a local origin show through the mount within 2 s: a new file, a
//! retagged file, a deleted file, a new album folder, also where the kernel
//! had been told the name was not there.

use std::path::Path;
use std::time::{Duration, Instant};

use lofty::config::WriteOptions;
use lofty::prelude::{Accessor, TagExt};
use lofty::tag::{Tag, TagType};
use musicfs_tests::audio_library::{self, copy_tree, ffmpeg, TRACKS};
use musicfs_tests::chunk_bytes;
use musicfs_tests::mounted::Mounted;

const WITHIN: Duration = Duration::from_secs(2);

/// Waits up to 2 s for `condition`; returns how long it took.
fn within_two_seconds(what: &str, mount: &Mounted, condition: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > WITHIN {
            panic!(
                "{what}: not seen through the mount within {WITHIN:?}; log:\n{}",
                mount.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn retitle(path: &Path, title: &str) {
    let mut tag = Tag::new(TagType::VorbisComments);
    tag.set_title(title.into());
    tag.set_artist("Solo".into());
    tag.set_album("Numbers".into());
    tag.set_track(1);
    tag.save_to_path(path, WriteOptions::default()).unwrap();
}

#[test]
fn changes_in_a_local_origin_show_through_the_mount() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(audio_library::shared(), source.path());
    let work = tempfile::tempdir().unwrap();
    let origin = format!("local:{}", source.path().display());
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &["--origin".into(), origin],
        Some(TRACKS[0].shown_as),
    );
    // Fill the kernel's caches, so that stale entries would show.
    let listing = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(mount.path(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert!(listing("Solo/Numbers").contains(&"01 - One.flac".to_owned()));
    let old_content = std::fs::read(mount.path(TRACKS[0].shown_as)).unwrap();

    // A new file, looked for first: the kernel keeps that it was not there
    // (a negative entry) until the mount says otherwise.
    assert!(!mount.path("Solo/Numbers/07 - Seven.flac").exists());
    let tags = [
        ("title", "Seven"),
        ("artist", "Solo"),
        ("album", "Numbers"),
        ("track", "7"),
    ];
    ffmpeg(
        "sine=frequency=999:duration=1",
        &tags,
        &[],
        &source.path().join("a/seven.flac"),
    );
    let took = within_two_seconds("a new file", &mount, || {
        listing("Solo/Numbers").contains(&"07 - Seven.flac".to_owned())
    });
    println!("new file visible after {took:?}");
    within_two_seconds("a new file looked up by name", &mount, || {
        mount.path("Solo/Numbers/07 - Seven.flac").exists()
    });
    assert_eq!(
        std::fs::read(mount.path("Solo/Numbers/07 - Seven.flac")).unwrap(),
        std::fs::read(source.path().join("a/seven.flac")).unwrap()
    );

    // A retagged file: the old name goes, the new one comes with the new bytes.
    retitle(&source.path().join(TRACKS[0].source), "Uno");
    within_two_seconds("a retagged file", &mount, || {
        let names = listing("Solo/Numbers");
        names.contains(&"01 - Uno.flac".to_owned()) && !names.contains(&"01 - One.flac".to_owned())
    });
    let new_content = std::fs::read(mount.path("Solo/Numbers/01 - Uno.flac")).unwrap();
    assert_eq!(
        new_content,
        std::fs::read(source.path().join(TRACKS[0].source)).unwrap()
    );
    assert_ne!(new_content, old_content);

    // A deleted file.
    std::fs::remove_file(source.path().join("a/seven.flac")).unwrap();
    within_two_seconds("a deleted file", &mount, || {
        !listing("Solo/Numbers").contains(&"07 - Seven.flac".to_owned())
    });
    assert!(!mount.path("Solo/Numbers/07 - Seven.flac").exists());

    // A new album folder, copied in whole (its artist looked for first).
    assert!(!mount.path("Newcomer/Debut/01 - Fresh.flac").exists());
    let staging = tempfile::tempdir().unwrap();
    let tags = [
        ("title", "Fresh"),
        ("artist", "Newcomer"),
        ("album", "Debut"),
        ("track", "1"),
    ];
    ffmpeg(
        "sine=frequency=777:duration=1",
        &tags,
        &[],
        &staging.path().join("fresh.flac"),
    );
    std::fs::rename(staging.path(), source.path().join("debut")).unwrap_or_else(|_| {
        std::fs::create_dir(source.path().join("debut")).unwrap();
        std::fs::copy(
            staging.path().join("fresh.flac"),
            source.path().join("debut/fresh.flac"),
        )
        .unwrap();
    });
    within_two_seconds("a new album folder", &mount, || {
        mount.path("Newcomer/Debut/01 - Fresh.flac").exists()
    });
}

#[test]
fn retagging_a_cached_track_stores_only_the_changed_chunks() {
    let source = tempfile::tempdir().unwrap();
    let track = source.path().join("big/long.flac");
    let tags = [
        ("title", "Long Take"),
        ("artist", "Drone"),
        ("album", "Hours"),
        ("track", "1"),
    ];
    // About 20 MB of FLAC: two and a half minutes of stereo noise.
    audio_library::ffmpeg(
        "anoisesrc=duration=150:sample_rate=44100",
        &tags,
        &["-ac", "2"],
        &track,
    );
    let size = std::fs::metadata(&track).unwrap().len();
    assert!(size > 18_000_000, "only {size} bytes");

    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let origin = format!("local:{}", source.path().display());
    let mount = Mounted::start(
        work.path(),
        &cache,
        &["--origin".into(), origin],
        Some("Drone/Hours/01 - Long Take.flac"),
    );
    assert_eq!(
        std::fs::read(mount.path("Drone/Hours/01 - Long Take.flac")).unwrap(),
        std::fs::read(&track).unwrap()
    );
    let before = chunk_bytes(&cache);

    let mut tag = Tag::new(TagType::VorbisComments);
    tag.set_title("Longer Take".into());
    tag.set_artist("Drone".into());
    tag.set_album("Hours".into());
    tag.set_track(1);
    tag.save_to_path(&track, WriteOptions::default()).unwrap();
    within_two_seconds("the retagged track", &mount, || {
        mount.path("Drone/Hours/01 - Longer Take.flac").exists()
    });
    assert_eq!(
        std::fs::read(mount.path("Drone/Hours/01 - Longer Take.flac")).unwrap(),
        std::fs::read(&track).unwrap()
    );
    let added = chunk_bytes(&cache) - before;
    println!(
        "tag-only change to a {size}-byte track stored {added} new bytes ({:.2}%)",
        added as f64 * 100.0 / size as f64
    );
    assert!(
        added * 10 < size,
        "{added} new bytes for a tag change to a {size}-byte track"
    );
}

#[test]
fn a_file_deleted_on_one_origin_stays_while_another_replica_has_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_tree(audio_library::shared(), a.path());
    copy_tree(audio_library::shared(), b.path());
    let work = tempfile::tempdir().unwrap();
    let args = [
        "--origin".to_owned(),
        format!("local:{}", a.path().display()),
        "--origin".to_owned(),
        format!("local:{}", b.path().display()),
    ];
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some(TRACKS[0].shown_as),
    );
    let shown = mount.path(TRACKS[0].shown_as);
    assert_eq!(
        musicfs_tests::xattr(&shown, "user.musicfs.origin").as_deref(),
        Some("local")
    );
    std::fs::remove_file(a.path().join(TRACKS[0].source)).unwrap();
    within_two_seconds("the remaining replica", &mount, || {
        musicfs_tests::xattr(&shown, "user.musicfs.origin").as_deref() == Some("local-2")
    });
    assert!(shown.exists(), "the other replica still holds it");
    assert_eq!(
        std::fs::read(&shown).unwrap(),
        std::fs::read(b.path().join(TRACKS[0].source)).unwrap()
    );
    // Gone from both: gone from the tree.
    std::fs::remove_file(b.path().join(TRACKS[0].source)).unwrap();
    within_two_seconds("the last replica deleted", &mount, || !shown.exists());
}
