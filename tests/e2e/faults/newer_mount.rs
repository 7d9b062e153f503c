//! A daemon stopping after its mount was taken away from outside (issue 9, case
//! 8). Before the fix it unmounted by path on the way out, taking down whatever was
//! mounted there since: a newer musicfs at the same mountpoint.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use musicfs_tests::mounted::Mounted;

#[test]
fn a_stopping_daemon_leaves_a_newer_mount_at_its_path_alone() {
    let work = tempfile::tempdir().unwrap();
    let (old_work, new_work) = (work.path().join("old"), work.path().join("new"));
    let mountpoint = work.path().join("mnt");
    let old = Mounted::start_at(
        &old_work,
        &mountpoint,
        &old_work.join("cache"),
        &[],
        Some("Aurora Lines"),
        "info",
    );
    let pid = old.pid().unwrap() as i32;

    // Stopped, it cannot notice its mount go away until the new one is up.
    // SAFETY: signals to a child we own; umount2 with a valid C string.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let path = CString::new(mountpoint.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }, 0);
    let new = Mounted::start_at(
        &new_work,
        &mountpoint,
        &new_work.join("cache"),
        &[],
        Some("Aurora Lines"),
        "info",
    );
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let log = old.wait_for_exit(Duration::from_secs(30));

    assert!(
        musicfs::mount::mountpoint::is_mounted(&new.mountpoint),
        "the old daemon unmounted the new mount; its log:\n{log}"
    );
    assert!(
        std::fs::read_dir(new.path("Aurora Lines")).is_ok(),
        "{}",
        new.log()
    );
    // Its control socket is the new mount's, and still there.
    let status = std::process::Command::new(musicfs_tests::musicfs_binary())
        .args(["status", "--mount"])
        .arg(&new.mountpoint)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "the old daemon took the new mount's control socket: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}
