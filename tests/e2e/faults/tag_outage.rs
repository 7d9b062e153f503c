//! An origin that fails while the scan reads tags (issue 9, case 1). Before the
//! fix, every track read during the outage landed in `Unknown Artist/Unknown
//! Album` and stayed there after the origin came back, and after restarts, since
//! its size and mtime had not changed.

use std::time::{Duration, SystemTime};

use musicfs_tests::mounted::Mounted;

use super::{track, tree, wait_for_scans};

#[test]
fn an_outage_while_tags_are_read_leaves_no_track_untagged() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..4 {
        track(
            &source.join(format!("t{i}.flac")),
            "Outage",
            "Probe",
            i + 1,
            &format!("Tone {i}"),
        );
    }
    let shown = |i: u32| format!("Outage/Probe/{:02} - Tone {i}.flac", i + 1);
    let fault = work.path().join("fault");
    let health = "[health]\ncheck_interval_secs = 1\ntimeout_ms = 2000\n";
    let args = musicfs_tests::faulty_folder_config(work.path(), "flaky", &source, &fault, health);
    let cache = work.path().join("cache");

    // The origin lists but every read fails during the first scan.
    std::fs::write(&fault, "fail-reads").unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, None);
    wait_for_scans(&mount, 1);
    assert!(
        mount
            .log()
            .contains("tags not read because the origin failed"),
        "{}",
        mount.log()
    );
    assert!(
        !mount.path("Unknown Artist").exists(),
        "tracks whose tags could not be read are shown under fallback names: {:?}",
        tree(&mount.mountpoint)
    );

    // The origin comes back: the tags are read without a restart.
    std::fs::remove_file(&fault).unwrap();
    mount.wait_until(Duration::from_secs(60), |m| {
        (0..4).all(|i| m.path(&shown(i)).exists())
    });
    assert!(!mount.path("Unknown Artist").exists());
    assert_eq!(
        std::fs::read(mount.path(&shown(2))).unwrap(),
        std::fs::read(source.join("t2.flac")).unwrap()
    );
    mount.stop();

    // A track that changed is read again during another outage: it keeps the
    // tags it had, across a restart, instead of falling back to its file name.
    let file = std::fs::File::options()
        .append(true)
        .open(source.join("t0.flac"))
        .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    drop(file);
    std::fs::write(&fault, "fail-reads").unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, None);
    wait_for_scans(&mount, 1);
    assert!(
        mount.path(&shown(0)).exists() && !mount.path("Unknown Artist").exists(),
        "{:?}",
        tree(&mount.mountpoint)
    );
    mount.stop();

    // Restarted with the origin back: every track has its tags.
    std::fs::remove_file(&fault).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, None);
    wait_for_scans(&mount, 1);
    assert!((0..4).all(|i| mount.path(&shown(i)).exists()));
    assert!(!mount.path("Unknown Artist").exists());
}
