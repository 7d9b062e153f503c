//! The process that serves a mount dies, or is upgraded, under a live mount
//! (issue 28). Before the keeper, the daemon held the FUSE device itself: when
//! it died, every path of the mount answered ENOTCONN until unmounted by hand.
//!
//! Now `musicfs mount` keeps the device and runs the daemon as its child. Here
//! a reader is halfway through a track when the daemon is killed (SIGKILL) or
//! replaced (SIGHUP, as `systemctl reload` sends): its reads go on and end with
//! the file's exact bytes (the issue allows an error in time; none comes, and
//! none would be ENOTCONN); nothing hangs; the file keeps its inode number; a
//! new daemon serves the mount.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use musicfs_tests::mounted::Mounted;

/// The pid of the daemon serving under the keeper `keeper`.
fn serving_pid(keeper: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{keeper}/task/{keeper}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("serve-mount"))
        })
}

/// Reads `path` whole in 128 KiB reads; once a MiB has come, `interrupt`
/// runs before the next read. The outcome: the bytes, or the error that ended the read.
fn read_through(path: &Path, interrupt: impl FnOnce()) -> std::io::Result<Vec<u8>> {
    let (started_tx, started_rx) = mpsc::channel();
    let (interrupted_tx, interrupted_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let path = path.to_owned();
    let reader = std::thread::spawn(move || {
        let outcome = (|| {
            // O_DIRECT: every read goes to the daemon, none is served from
            // pages the kernel read ahead before the interruption.
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)?;
            let mut bytes = Vec::new();
            let mut buf = vec![0u8; 128 << 10];
            let mut told = false;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(bytes);
                }
                bytes.extend_from_slice(&buf[..n]);
                if !told && bytes.len() >= 1 << 20 {
                    told = true;
                    let _ = started_tx.send(());
                    // The rest is read only once the interruption was sent.
                    let _ = interrupted_rx.recv();
                }
            }
        })();
        let _ = done_tx.send(outcome);
    });
    started_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the read started");
    interrupt();
    let _ = interrupted_tx.send(());
    // A hang detector, not a speed bound.
    let outcome = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the read hung after the interruption");
    reader.join().unwrap();
    outcome
}

/// Where the untagged noise file shows.
const TRACK: &str = "Unknown Artist/Unknown Album/long.flac";

fn check_case(kind: &str, signal: i32) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    // 32 MiB: most of it is read after the interruption.
    musicfs_tests::bench_support::noise_file(&source.join("long.flac"), 32 << 20, 7);
    let want = std::fs::read(source.join("long.flac")).unwrap();
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &["--origin".into(), format!("local:{}", source.display())],
        Some(TRACK),
    );
    super::wait_for_scans(&mount, 1);
    let track = mount.path(TRACK);
    let inode = std::fs::metadata(&track).unwrap().ino();
    let keeper = mount.pid().unwrap();
    let first = serving_pid(keeper).expect("a daemon serves the mount");

    let outcome = read_through(&track, || {
        let target = if signal == libc::SIGHUP {
            keeper
        } else {
            first
        };
        // SAFETY: kill(2) on a process of this test.
        unsafe { libc::kill(target as i32, signal) };
    });
    // Every byte, exactly: the reads the old daemon had taken and not
    // answered were sent again to the new one.
    match outcome {
        Ok(bytes) => assert!(bytes == want, "{kind}: the bytes read differ"),
        Err(e) => panic!("{kind}: the read failed: {e}"),
    }

    // Another daemon serves; the file kept its inode; reads go on.
    mount.wait_until(Duration::from_secs(60), |_| {
        serving_pid(keeper).is_some_and(|pid| pid != first)
    });
    assert_eq!(std::fs::metadata(&track).unwrap().ino(), inode, "{kind}");
    assert_eq!(std::fs::read(&track).unwrap(), want, "{kind}: read again");
    assert!(
        mount.log().contains("a new daemon serves the mount"),
        "{kind}"
    );
    // Its control socket answers, and its origin comes up.
    mount.wait_until(Duration::from_secs(60), |m| {
        musicfs_tests::status_of(&m.mountpoint).origins.len() == 1
    });
    let log = mount.stop();
    assert!(log.contains("unmounted"), "{kind}: {log}");
}

#[test]
fn a_daemon_killed_mid_read_is_replaced_under_the_live_mount() {
    check_case("SIGKILL to the daemon", libc::SIGKILL);
}

#[test]
fn sighup_replaces_the_daemon_under_the_live_mount() {
    check_case("SIGHUP to the keeper", libc::SIGHUP);
}
