//! Starting it like a disk: `mount -t fuse.musicfs CONFIG MOUNTPOINT` and the
//! fstab line, through the real mount(8) and mount.fuse3; the systemd units in
//! `host/systemd/`, checked by systemd itself.
//!
//! mount.fuse3 runs `musicfs` from the default PATH, and mount(8) reads
//! /etc/fstab: the test runs in a mount namespace of its own (`unshare -m`)
//! where a folder holding `musicfs` is bound over /usr/local/bin and a fstab of
//! the test's over /etc/fstab, so nothing of the machine's is touched.

use std::path::Path;
use std::process::Command;

use musicfs_tests::audio_library::{self, ffprobe_accepts};
use musicfs_tests::{install_plugin, musicfs_binary};

/// Runs `script` with `sh -e` in a new private mount namespace; returns what
/// it printed, or panics with its output.
fn in_own_namespace(script: &str) -> String {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", script])
        .output()
        .expect("unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the script failed:\n{text}");
    text
}

/// Shell that waits (polling, up to a generous bound) until `$1` holds a FLAC.
const WAIT_FOR_TRACKS: &str = r#"
wait_for_tracks() {
    for _ in $(seq 1200); do
        found=$(find "$1" -name '*.flac' | head -n 1)
        [ -n "$found" ] && { echo "track: $found"; return 0; }
        sleep 0.1
    done
    echo "no track appeared in $1"; return 1
}
wait_for_exit() {
    for _ in $(seq 1200); do
        grep -q "$1 unmounted\|$1 was unmounted from outside" "$2" && return 0
        sleep 0.1
    done
    echo "the daemon of $1 did not stop"; cat "$2"; return 1
}
"#;

#[test]
fn mount_t_fuse_musicfs_and_the_fstab_line_mount_the_library() {
    // SAFETY: geteuid cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "mount -t needs root (mount(8) with a type and a source is root's): run the tests as root, as CI does"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let bin = w.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(musicfs_binary(), bin.join("musicfs")).unwrap();
    let plugins = w.join("plugins");
    install_plugin(&plugins, "musicfs_local");
    let config = w.join("musicfs.toml");
    std::fs::write(
        &config,
        format!(
            "[[origins]]\nid = \"disk\"\ntype = \"local\"\npath = \"{}\"\n",
            audio_library::shared().display()
        ),
    )
    .unwrap();
    let (by_type, by_fstab) = (w.join("by-type"), w.join("by-fstab"));
    std::fs::create_dir_all(&by_type).unwrap();
    std::fs::create_dir_all(&by_fstab).unwrap();
    let fstab = w.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# the README's line, with the test's folders\n\
             {config} {mnt} fuse.musicfs defaults,_netdev,allow_other,cache_dir={cache},plugins={plugins} 0 0\n",
            config = config.display(),
            mnt = by_fstab.display(),
            cache = w.join("cache-fstab").display(),
            plugins = plugins.display(),
        ),
    )
    .unwrap();
    let script = format!(
        r#"{WAIT_FOR_TRACKS}
mount --bind '{bin}' /usr/local/bin
mount --bind '{fstab}' /etc/fstab
mount -t fuse.musicfs -o ro,cache_dir='{w}/cache-type',plugins='{plugins}' '{config}' '{by_type}'
echo "mount -t returned $?"
grep " {by_type} " /proc/self/mounts
wait_for_tracks '{by_type}'
cp "$found" '{w}/played-by-type.flac'
mount '{by_fstab}'
grep " {by_fstab} " /proc/self/mounts
wait_for_tracks '{by_fstab}'
cp "$found" '{w}/played-by-fstab.flac'
umount '{by_type}'
umount '{by_fstab}'
wait_for_exit '{by_type}' '{w}/cache-type/musicfs.log'
wait_for_exit '{by_fstab}' '{w}/cache-fstab/musicfs.log'
# A typo in the options fails the mount, naming the option.
if mount -t fuse.musicfs -o alow_other '{config}' '{by_type}' 2>&1; then echo "a typo mounted"; exit 1; fi
"#,
        bin = bin.display(),
        fstab = fstab.display(),
        w = w.display(),
        plugins = plugins.display(),
        config = config.display(),
        by_type = by_type.display(),
        by_fstab = by_fstab.display(),
    );
    let out = in_own_namespace(&script);

    assert!(out.contains("mount -t returned 0"), "{out}");
    // Both mounts are FUSE mounts of type fuse.musicfs, read-only; the fstab
    // one lets other users in.
    let mount_line = |mnt: &Path| {
        out.lines()
            .find(|l| l.contains(&format!(" {} ", mnt.display())))
            .unwrap_or_else(|| panic!("{} not in /proc/self/mounts:\n{out}", mnt.display()))
            .to_owned()
    };
    let (typed, listed) = (mount_line(&by_type), mount_line(&by_fstab));
    for line in [&typed, &listed] {
        assert!(line.contains(" fuse.musicfs ro,"), "{line}");
    }
    assert!(listed.contains("allow_other"), "{listed}");
    assert!(!typed.contains("allow_other"), "{typed}");
    // What was read through each mount is real audio.
    for played in ["played-by-type.flac", "played-by-fstab.flac"] {
        assert!(ffprobe_accepts(&w.join(played)), "{played}\n{out}");
    }
    assert!(out.contains("unknown mount option `alow_other`"), "{out}");
    // The daemon logged to the cache folder, and said it was mounted there.
    let log = std::fs::read_to_string(w.join("cache-fstab/musicfs.log")).unwrap();
    assert!(log.contains("musicfs: mounted on"), "{log}");
}

/// The units in `host/systemd/`, with the built binary in place of the
/// installed one, pass `systemd-analyze verify` without a word (it names
/// unknown keys and bad values, and checks the program exists).
#[test]
fn the_systemd_units_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/systemd");
    let work = tempfile::tempdir().unwrap();
    let runtime = work.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let binary = musicfs_binary();
    for (unit, installed, scope) in [
        ("musicfs.service", "/usr/bin/musicfs", "--system"),
        ("musicfs-user.service", "%h/.cargo/bin/musicfs", "--user"),
    ] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        assert!(text.contains(installed), "{unit} runs {installed}");
        let copy = work.path().join(unit);
        std::fs::write(&copy, text.replace(installed, &binary.to_string_lossy())).unwrap();
        let out = Command::new("systemd-analyze")
            .args([scope, "verify", "--man=no"])
            .arg(&copy)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .expect("systemd-analyze (Debian's systemd)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}:\n{said}"
        );
    }
}
