//! A cache on a disk that fills up (issue 9, case 4), made for real: the cache
//! folder is a small tmpfs, filled to the last byte while the mount runs. Before
//! the fix, after one ENOSPC every index write failed ("Previous I/O error") until
//! a restart; failed chunk writes left `.tmp-*` files; manifests named chunks
//! never written, so `user.musicfs.cached` said `yes` for a file that then failed
//! offline; and every file of the plugins folder was copied into the cache
//! before it was checked, filling a small disk with copies of non-plugins.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use musicfs_tests::audio_library::{ffmpeg, files_below};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

use super::wait_for_scans;

/// A tmpfs of `bytes` at `dir`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs (the tests run as root)"
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the disk is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    loop {
        if let Err(e) = file.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    let _ = file.sync_all();
}

/// Reads a file through the mount, past the kernel's page cache.
fn read_fresh(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: a valid descriptor; DONTNEED only drops clean cached pages.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(file);
    std::fs::read(path).unwrap()
}

fn temp_files(cache: &Path) -> Vec<String> {
    files_below(&cache.join("chunks"))
        .into_iter()
        .filter(|f| f.rsplit('/').next().is_some_and(|n| n.starts_with(".tmp-")))
        .collect()
}

#[test]
fn a_full_cache_disk_serves_right_bytes_records_only_what_is_stored_and_recovers() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let tags = [("title", "Full"), ("artist", "Disk"), ("album", "Space")];
    ffmpeg(
        "anoisesrc=duration=20:sample_rate=48000",
        &tags,
        &[],
        &source.join("full.flac"),
    );
    let original = std::fs::read(source.join("full.flac")).unwrap();
    let shown = "Disk/Space/Full.flac";

    // Room for the plugin's copy, the index and a little more.
    let plugin = std::fs::metadata(musicfs_tests::local_plugin())
        .unwrap()
        .len();
    let cache = work.path().join("cache");
    let _disk = SmallDisk::mount(&cache, plugin + (6 << 20));
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let mount = Mounted::start(work.path(), &cache, &args, Some(shown));
    wait_for_scans(&mount, 1);

    fill(&cache.join("filler"));
    assert_eq!(
        read_fresh(&mount.path(shown)),
        original,
        "right bytes, disk full"
    );
    assert_eq!(
        temp_files(&cache),
        Vec::<String>::new(),
        "temporary files left"
    );
    let cached = xattr(&mount.path(shown), "user.musicfs.cached").unwrap();
    assert_ne!(
        cached, "yes",
        "chunks that could not be written count as cached"
    );

    // The index grows while the disk is full: thousands of files arrive.
    let small = work.path().join("small.flac");
    ffmpeg(
        "sine=frequency=300:duration=0.1",
        &[("title", "Many"), ("artist", "Disk"), ("album", "Crowd")],
        &[],
        &small,
    );
    for i in 0..3000 {
        std::fs::copy(&small, source.join(format!("many-{i:04}.flac"))).unwrap();
    }
    mount.wait_until(std::time::Duration::from_secs(60), |m| {
        m.log().contains("cannot record changes")
    });

    // Space comes back: the chunks are written and recorded, and the index takes
    // changes again, without a restart.
    std::fs::remove_file(cache.join("filler")).unwrap();
    let tags = [("title", "Late"), ("artist", "Disk"), ("album", "Space")];
    ffmpeg(
        "sine=frequency=600:duration=1",
        &tags,
        &[],
        &source.join("late.flac"),
    );
    mount.wait_until(std::time::Duration::from_secs(60), |m| {
        m.path("Disk/Space/Late.flac").exists() && m.path("Disk/Crowd/Many (3000).flac").exists()
    });
    // A hang detector: under a full test run the 3,000 files' scan above
    // still loads the machine, and once took this past 30 s in CI.
    mount.wait_until(std::time::Duration::from_secs(90), |m| {
        assert_eq!(read_fresh(&m.path(shown)), original);
        xattr(&m.path(shown), "user.musicfs.cached").as_deref() == Some("yes")
    });
    let log = mount.stop();
    assert!(log.contains("cannot store a chunk"), "{log}");

    // The index recovered: offline, after a restart, the file is whole.
    std::fs::rename(&source, work.path().join("gone")).unwrap();
    let mount = Mounted::start(work.path(), &cache, &args, Some(shown));
    assert_eq!(
        read_fresh(&mount.path(shown)),
        original,
        "offline after a restart"
    );
}

#[test]
fn only_real_plugins_are_copied_into_the_cache() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    musicfs_tests::install_plugin(&plugins, "musicfs_local");
    // Things a plugins folder may also hold: an executable, a library archive.
    musicfs_tests::place_musicfs_binary(&plugins.join("musicfs"));
    std::fs::write(plugins.join("libnotes.rlib"), b"!<arch>\nnot a plugin").unwrap();
    assert!(origin_api::host::check_plugin_file(&plugins.join("libmusicfs_local.so")).is_ok());
    assert!(matches!(
        origin_api::host::check_plugin_file(&plugins.join("musicfs")),
        Err(origin_api::host::LoadError::NotAPlugin)
    ));

    let cache = work.path().join("cache");
    let mount = Mounted::start(work.path(), &cache, &[], Some("Aurora Lines"));
    let copies: Vec<String> = std::fs::read_dir(cache.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].ends_with("-libmusicfs_local.so"), "{copies:?}");
    drop(mount);
}
