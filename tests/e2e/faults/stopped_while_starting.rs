//! SIGTERM while the daemon starts (issue 28). The handlers were installed only
//! once the origins had started: a signal before that (the first ~50 ms with a
//! local origin, seconds with a remote one) ended the process with 143 and left
//! a dead mount behind ("Transport endpoint is not connected").
//!
//! Here the one origin's health check hangs until its 3 s deadline, so start-up
//! is long enough to be hit at each of its moments: at once, once mounted,
//! while the origins are opened, after the first scan.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use musicfs_tests::musicfs_binary;

/// Whether anything is mounted at `path`, dead mounts included (a dead FUSE
/// mount cannot be `stat`ed, so this reads the mount table by name).
fn mounted_at(path: &Path) -> bool {
    let wanted = path.display().to_string().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(wanted.as_str()))
}

/// Whether a moment has come, from the daemon's log and its mountpoint.
type HasCome = dyn Fn(&str, &Path) -> bool;

#[test]
fn sigterm_at_any_moment_of_start_up_leaves_no_mount_behind() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    super::track(&source.join("a.flac"), "Early", "Signal", 1, "Stop");
    let fault = work.path().join("fault");
    std::fs::write(&fault, "hang").unwrap();
    let args = musicfs_tests::faulty_folder_config(
        work.path(),
        "slow",
        &source,
        &fault,
        "[health]\ntimeout_ms = 3000\n",
    );
    // Each moment: a name, and what the log shows when it has come.
    let moments: [(&str, &HasCome); 5] = [
        ("at once", &|_, _| true),
        ("once mounted", &|_, mnt| mounted_at(mnt)),
        // The plugin logs this as it opens the origin; the health check that
        // follows hangs for 3 s.
        ("while its origin opens", &|log, _| {
            log.contains("faulty origin opening")
        }),
        ("once its plugin is up", &|log, _| {
            log.contains("plugin loaded")
        }),
        ("after the first scan", &|log, _| {
            log.contains("scan finished")
        }),
    ];
    for (n, (moment, has_come)) in moments.iter().enumerate() {
        let mountpoint = work.path().join(format!("mnt-{n}"));
        std::fs::create_dir_all(&mountpoint).unwrap();
        let log_file = work.path().join(format!("mount-{n}.log"));
        let mut child = Command::new(musicfs_binary())
            .arg("mount")
            .arg("--plugins")
            .arg(work.path().join("plugins"))
            .arg("--cache-dir")
            .arg(work.path().join(format!("cache-{n}")))
            .args(&args)
            .arg(&mountpoint)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            if has_come(&log, &mountpoint) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{moment}: never came; log:\n{log}"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{moment}: exited early; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!(
                    "{moment}: still running after SIGTERM; log:\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        println!("{moment}: {status}");
        assert!(
            !mounted_at(&mountpoint),
            "{moment}: a mount was left behind; log:\n{log}"
        );
        // Exited by itself, in order. Only a signal that comes before the
        // process has set anything up (no mount yet) may end it by default.
        use std::os::unix::process::ExitStatusExt;
        let killed_before_mounting =
            status.signal() == Some(libc::SIGTERM) && !log.contains("Mounting");
        assert!(
            status.success() || (n == 0 && killed_before_mounting),
            "{moment}: {status}; log:\n{log}"
        );
    }
}
