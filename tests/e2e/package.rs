//! The Debian package as a user installs it: `packaging/build-deb` (here from
//! the debug build) makes the `.deb`, `dpkg -i` installs it, `mount -t
//! fuse.musicfs` mounts a library with nothing but what it installed (the
//! binary on mount(8)'s PATH, the plugins found in /usr/lib/musicfs/plugins
//! without being named), and `dpkg -r` then `dpkg --purge` take every file
//! away again. It needs root (dpkg, mount) and cargo-deb, as CI has; it
//! refuses to run over a musicfs package the machine has installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use musicfs_tests::audio_library::{self, ffprobe_accepts};

const INSTALLED: &[&str] = &[
    "/usr/bin/musicfs",
    "/usr/lib/musicfs/plugins/libmusicfs_local.so",
    "/usr/lib/musicfs/plugins/libmusicfs_s3.so",
    "/usr/lib/musicfs/plugins/libmusicfs_sftp.so",
    "/usr/lib/musicfs/plugins/libmusicfs_nfs.so",
    "/usr/lib/musicfs/plugins/libmusicfs_smb.so",
    "/usr/lib/systemd/system/musicfs.service",
    "/usr/share/man/man1/musicfs.1.gz",
    "/usr/share/bash-completion/completions/musicfs",
    "/usr/share/zsh/vendor-completions/_musicfs",
    "/usr/share/fish/vendor_completions.d/musicfs.fish",
];

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{said}");
    said
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "musicfs"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// Purges the package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "musicfs"]).output();
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first FLAC below `dir`, if any.
fn a_track(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "flac") {
                return Some(path);
            }
        }
    }
    None
}

#[test]
fn the_package_installs_mounts_with_what_it_installed_and_removes_cleanly() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "installing a package needs root: run the tests as root, as CI does"
    );
    assert!(
        !installed(),
        "a musicfs package is installed on this machine; this test would replace it (dpkg -r musicfs first)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    run(Command::new(root.join("packaging/build-deb")).env("PROFILE", "dev"));
    let deb = std::fs::read_dir(root.join("target/debian"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("packaging/build-deb made a .deb");

    let _purge = Purge;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    for file in INSTALLED.iter().chain(&["/etc/musicfs.toml"]) {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    // The configuration may hold passwords: root's alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata("/etc/musicfs.toml")
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "/etc/musicfs.toml is {mode:o}");
    // The installed binary finds the installed plugins by itself.
    let home = tempfile::tempdir().unwrap();
    let listed = run(Command::new("/usr/bin/musicfs")
        .arg("plugins")
        .env("HOME", home.path())
        .env_remove("MUSICFS_PLUGINS")
        .env_remove("XDG_DATA_HOME"));
    assert!(
        listed.contains("/usr/lib/musicfs/plugins/libmusicfs_local.so: loaded"),
        "{listed}"
    );
    assert!(run(Command::new("/usr/bin/musicfs").arg("man")).contains(".TH musicfs 1"));

    // mount -t fuse.musicfs, with nothing but what the package installed.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("library.toml");
    std::fs::write(
        &config,
        format!(
            "cache_dir = \"{}\"\n[[origins]]\nid = \"disk\"\ntype = \"local\"\npath = \"{}\"\n",
            work.path().join("cache").display(),
            audio_library::shared().display()
        ),
    )
    .unwrap();
    let mountpoint = work.path().join("music");
    std::fs::create_dir_all(&mountpoint).unwrap();
    run(Command::new("mount")
        .args(["-t", "fuse.musicfs"])
        .arg(&config)
        .arg(&mountpoint));
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.contains(&format!(" {} fuse.musicfs ro,", mountpoint.display())));
    let log = work.path().join("cache/musicfs.log");
    assert!(
        mounted,
        "not mounted: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    wait_for("a track shown", Duration::from_secs(120), || {
        a_track(&mountpoint).is_some()
    });
    let played = work.path().join("played.flac");
    std::fs::copy(a_track(&mountpoint).unwrap(), &played).unwrap();
    assert!(ffprobe_accepts(&played));
    run(Command::new("umount").arg(&mountpoint));
    wait_for("the daemon to stop", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("unmounted"))
    });

    // Removed: every file but the configuration; purged: that too.
    run(Command::new("dpkg").args(["-r", "musicfs"]));
    for file in INSTALLED {
        assert!(!Path::new(file).exists(), "{file} left after dpkg -r");
    }
    assert!(
        !Path::new("/usr/lib/musicfs").exists(),
        "/usr/lib/musicfs left"
    );
    assert!(
        Path::new("/etc/musicfs.toml").exists(),
        "dpkg -r keeps a configuration file"
    );
    run(Command::new("dpkg").args(["--purge", "musicfs"]));
    assert!(!Path::new("/etc/musicfs.toml").exists(), "purged");
    assert!(!installed());
}
