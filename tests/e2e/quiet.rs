//! Quiet on ordinary requests: a Python program that walks the mount and
//! reads every file the way a music server's scanner does (stat, access,
//! xattrs, `open` in binary and text mode, which asks whether the file is a
//! terminal, seeks and reads) leaves no warning in the daemon's log. Before,
//! each `open` logged fuser's "[Not Implemented] ioctl" warning: a line a
//! track in a Python server's library scan.

use std::process::Command;
use std::time::Duration;

use musicfs_tests::mounted::Mounted;

const SCAN: &str = r#"
import os, sys
files = 0
for folder, _, names in os.walk(sys.argv[1]):
    for name in names:
        path = os.path.join(folder, name)
        size = os.stat(path).st_size
        assert os.access(path, os.R_OK)
        assert not os.access(path, os.W_OK)
        try:
            os.listxattr(path)
        except OSError:
            pass
        with open(path, "rb") as f:
            assert not f.isatty()
            f.read(4096)
            f.seek(max(0, size - 128))
            f.read()
        with open(path, "r", errors="ignore") as f:
            f.read(16)
        files += 1
print(files)
"#;

#[test]
fn a_python_scan_of_the_mount_logs_no_warning() {
    let work = tempfile::tempdir().unwrap();
    musicfs_tests::install_plugin(&work.path().join("plugins"), "musicfs_local");
    // No origin: the generated sample library.
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &[], None);
    mount.wait_until(Duration::from_secs(60), |m| {
        std::fs::read_dir(&m.mountpoint).is_ok_and(|mut d| d.next().is_some())
    });
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCAN)
        .arg(&mount.mountpoint)
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(files >= 8, "the scan read {files} files");
    let log = mount.plain_log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains("Not Implemented"))
        .collect();
    assert!(warnings.is_empty(), "warnings: {warnings:#?}");
}
