//! Where plugins are found without `--plugins` (`$MUSICFS_PLUGINS`, else the
//! XDG data folder if it exists, else the executable's folder), and that only
//! files named like shared libraries are candidates, the rest left alone
//! quietly.

use std::path::Path;
use std::process::Command;

use musicfs_tests::install_plugin;
use musicfs_tests::mounted::Mounted;

/// What `exe plugins` (no `--plugins`) prints with `home` as `$HOME` and
/// `env_dir`, if any, as `$MUSICFS_PLUGINS`.
fn listing(exe: &Path, home: &Path, env_dir: Option<&Path>) -> String {
    let mut command = Command::new(exe);
    command
        .arg("plugins")
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("MUSICFS_PLUGINS");
    if let Some(dir) = env_dir {
        command.env("MUSICFS_PLUGINS", dir);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn plugins_are_found_without_asking() {
    let work = tempfile::tempdir().unwrap();
    let (exe_dir, home) = (work.path().join("bin"), work.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    install_plugin(&exe_dir, "musicfs_local");
    let exe = exe_dir.join("musicfs");
    musicfs_tests::place_musicfs_binary(&exe);

    // Nothing set, no XDG folder: the executable's own folder.
    let out = listing(&exe, &home, None);
    assert!(
        out.contains("bin/libmusicfs_local.so: loaded: kind local"),
        "{out}"
    );
    assert!(
        out.contains("bin/musicfs: skipped: not named like a shared library (*.so)"),
        "{out}"
    );

    // The XDG data folder, once it exists, comes first.
    let xdg = home.join(".local/share/musicfs/plugins");
    install_plugin(&xdg, "musicfs_test_faulty");
    let out = listing(&exe, &home, None);
    assert!(
        out.contains("plugins/libmusicfs_test_faulty.so: loaded: kind faulty"),
        "{out}"
    );
    assert!(!out.contains("bin/"), "{out}");

    // $MUSICFS_PLUGINS before both.
    let chosen = work.path().join("chosen");
    install_plugin(&chosen, "musicfs_local");
    let out = listing(&exe, &home, Some(&chosen));
    assert!(
        out.contains("chosen/libmusicfs_local.so: loaded: kind local"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn a_mount_leaves_files_that_are_not_libraries_alone() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_plugin(&plugins, "musicfs_local");
    std::fs::write(plugins.join("README.txt"), b"plugins go here").unwrap();
    musicfs_tests::place_musicfs_binary(&plugins.join("musicfs"));
    std::fs::write(
        plugins.join("musicfs.d"),
        b"target/release/musicfs: src/main.rs",
    )
    .unwrap();
    // No origin: the sample library, served through the local plugin.
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &[], None);
    mount.wait_until(std::time::Duration::from_secs(60), |m| {
        std::fs::read_dir(&m.mountpoint).is_ok_and(|mut d| d.next().is_some())
    });
    let log = mount.stop();
    assert!(log.contains("plugin loaded"), "{log}");
    for quiet in ["README.txt", "musicfs.d", "plugins/musicfs ", "ERROR"] {
        assert!(!log.contains(quiet), "{quiet} in the log:\n{log}");
    }
}
