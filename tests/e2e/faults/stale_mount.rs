//! A folder of a local origin that cannot be listed (issue 9, case 2): here a
//! network mount whose server died, made for real as a musicfs mount inside the
//! origin that is killed (stat and readdir then give ENOTCONN). Before the fix the
//! local plugin left the dead folder out of its parent's listing without a word,
//! and the next scan dropped every track below it; so did the change feed when a
//! change to the parent folder made it rescan that folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use musicfs_tests::events::Events;
use musicfs_tests::mounted::Mounted;

use super::{track, tree, wait_for_scans};

/// Detaches the dead mount when the test ends, however it ends.
struct DeadMount(PathBuf);

impl Drop for DeadMount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.0)
            .status();
    }
}

fn kill_a_mount_at(work: &Path, at: &Path) -> DeadMount {
    let inner = Mounted::start_at(
        &work.join("inner"),
        at,
        &work.join("inner-cache"),
        &[],
        None,
        "warn",
    );
    inner.kill();
    let dead = DeadMount(at.to_owned());
    // The kernel answers a stat from attributes it cached (for the TTL); a
    // listing always asks the daemon, and fails once the connection is gone.
    let started = std::time::Instant::now();
    loop {
        match std::fs::read_dir(at) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
            other => assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the killed mount still answers: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    dead
}

#[test]
fn a_folder_that_cannot_be_listed_keeps_its_tracks() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    for i in 0..2 {
        track(
            &source.join(format!("here/h{i}.flac")),
            "Here",
            "Local",
            i + 1,
            &format!("H {i}"),
        );
        track(
            &source.join(format!("box/nas/n{i}.flac")),
            "Away",
            "Remote",
            i + 1,
            &format!("N {i}"),
        );
    }
    let away = ["Away/Remote/01 - N 0.flac", "Away/Remote/02 - N 1.flac"];
    let origin = format!("local:{}", source.display());
    let cache = work.path().join("cache");
    let mount = Mounted::start(
        work.path(),
        &cache,
        &["--origin".into(), origin.clone()],
        Some(away[1]),
    );
    mount.stop();

    let _dead = kill_a_mount_at(work.path(), &source.join("box/nas"));
    let mount = Mounted::start(work.path(), &cache, &["--origin".into(), origin], None);
    wait_for_scans(&mount, 1);
    let kept = |when: &str| {
        for shown in away {
            assert!(
                mount.path(shown).exists(),
                "{when}: {shown} was dropped; the mount shows {:?}",
                tree(&mount.mountpoint)
            );
        }
    };
    kept("after the scan");

    // A change to the folder holding the dead mount: the watch reports it, and
    // the change feed rescans that folder.
    let events = Events::follow(&mount.mountpoint);
    std::fs::File::open(source.join("box"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let changed = ["FileChanged", "\"path\":\"box\""];
    events.wait_for(&changed);
    events.wait_for_after(&changed, &["LibraryUpdated"]);
    kept("after the change feed rescanned the folder");
    assert!(mount.path("Here/Local/02 - H 1.flac").exists());
    let log = mount.stop();
    assert!(
        log.contains("folder not listed") && log.contains("box/nas"),
        "the dead folder is not reported:\n{log}"
    );
}
