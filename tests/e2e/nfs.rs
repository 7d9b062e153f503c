//! The NFS plugin, loaded from its `.so`, against a real nfs-ganesha on
//! loopback, over NFSv3 and NFSv4.

use std::time::Duration;

use musicfs_tests::nfs_server::NfsServer;
use musicfs_tests::{plugin_library, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::Settings;

async fn conformance(version: u8) {
    let server = NfsServer::start();
    let fixture = LocalFixture {
        root: server.library.clone(),
    };
    let sparse = testkit::populate(&fixture).await.unwrap();
    let plugin = load_plugin(&plugin_library("musicfs_nfs")).unwrap();
    assert_eq!(plugin.info().kind, "nfs");
    let origin = plugin
        .open(Settings::new("nas", server.settings(version)))
        .await
        .unwrap();
    // Polling once a second: give each event two polls, and the silence three.
    let options = Options {
        watch_timeout: Duration::from_secs(4),
        quiet_period: Duration::from_secs(3),
    };
    let report = testkit::run(&*origin, &fixture, sparse, &options).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), 14, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_plugin_passes_the_conformance_suite_over_v3() {
    conformance(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_plugin_passes_the_conformance_suite_over_v4() {
    conformance(4).await;
}

/// Copies every file of `dir` to a new inode (a restore from backup): every
/// handle the server gave out goes stale.
fn copy_to_new_inodes(dir: &std::path::Path) {
    let moved = dir.with_extension("old");
    std::fs::rename(dir, &moved).unwrap();
    musicfs_tests::audio_library::copy_tree(&moved, dir);
    std::fs::remove_dir_all(&moved).unwrap();
}

/// A library on the export, mounted through `musicfs mount` over NFS
/// `version`: identical reads, the server stopped (cached files play,
/// uncached reads fail), its files copied to new inodes, and back with no
/// remount; copied again while it runs.
fn mount_survives_a_restart_with_new_inodes(version: u8) {
    use musicfs_tests::audio_library::{self, copy_tree, TRACKS};
    use musicfs_tests::bench_support::noise_file;
    use musicfs_tests::mounted::Mounted;
    use musicfs_tests::s3_server::{mount_args_for, origins_config};
    use std::os::unix::fs::FileExt;

    const BIG: u64 = 24 << 20;
    let mut server = NfsServer::start();
    copy_tree(audio_library::shared(), &server.library);
    noise_file(&server.library.join("big/big.flac"), BIG, 21);
    let big_source = std::fs::read(server.library.join("big/big.flac")).unwrap();
    let big = "Unknown Artist/Unknown Album/big.flac";
    let mut origin = server.origin("nas", version);
    // No polls between the steps: the mount keeps the handles it was given.
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let mut config = origins_config(vec![origin]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    health.insert("timeout_ms".into(), 3000i64.into());
    config.insert("health".into(), health.into());
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, "musicfs_nfs");
    let mount = Mounted::start_logging(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some(big),
        "info,musicfs::plugin=debug",
    );

    for track in TRACKS {
        let through = std::fs::read(mount.path(track.shown_as)).unwrap();
        let source = std::fs::read(server.library.join(track.source)).unwrap();
        assert!(through == source, "{} differs", track.shown_as);
    }

    server.pause();
    for track in TRACKS {
        assert!(
            std::fs::read(mount.path(track.shown_as)).is_ok(),
            "{} offline",
            track.shown_as
        );
    }
    let middle = BIG / 2;
    let err = std::fs::File::open(mount.path(big))
        .unwrap()
        .read_exact_at(&mut [0u8; 4096], middle)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");

    copy_to_new_inodes(&server.library);
    server.resume();
    let at = middle as usize;
    mount.wait_until(Duration::from_secs(60), |m| {
        let mut buf = vec![0u8; 4096];
        std::fs::File::open(m.path(big)).is_ok_and(|f| f.read_exact_at(&mut buf, middle).is_ok())
            && buf[..] == big_source[at..at + 4096]
    });
    // The handles the mount kept name files that are gone: the server said so
    // (rather than the mount starting over), and they were looked up again.
    let log = mount.log();
    assert!(
        log.contains("stale file handle: looking the path up again"),
        "no handle was found stale:\n{log}"
    );
    // Copied again while the server runs: the mount's handles name files
    // that are gone (ganesha may still serve them from its open objects).
    copy_to_new_inodes(&server.library);
    let quarter = BIG / 4;
    let at = quarter as usize;
    mount.wait_until(Duration::from_secs(60), |m| {
        let mut buf = vec![0u8; 4096];
        std::fs::File::open(m.path(big)).is_ok_and(|f| f.read_exact_at(&mut buf, quarter).is_ok())
            && buf[..] == big_source[at..at + 4096]
    });
    assert!(mount.alive());
}

#[test]
fn a_v3_mount_survives_a_restart_with_new_inodes() {
    mount_survives_a_restart_with_new_inodes(3);
}

#[test]
fn a_v4_mount_survives_a_restart_with_new_inodes() {
    mount_survives_a_restart_with_new_inodes(4);
}

/// The health of an NFS origin opened with `table`, as `musicfs status` shows it.
async fn health_of(table: toml::Table) -> origin_api::Health {
    let plugin = load_plugin(&plugin_library("musicfs_nfs")).unwrap();
    let origin = plugin.open(Settings::new("nas", table)).await.unwrap();
    origin.health().await
}

/// Health says what is wrong: an export that is not there, one this client
/// may not mount, one that wants a source port below 1024 (which
/// `privileged_port = true` then mounts), a server that is not there.
async fn health_names_what_is_wrong(version: u8) {
    let server = NfsServer::start();
    let root = server.library.parent().unwrap().to_owned();
    let export = |name: &str| match version {
        3 => root.join(name).display().to_string(),
        _ => format!("/{name}"),
    };
    let on = |name: &str, privileged: bool| {
        let mut table = server.settings(version);
        table.insert("export".into(), export(name).into());
        table.insert("privileged_port".into(), privileged.into());
        table
    };
    // NFSv4 servers leave exports a client may not use out of its pseudo
    // tree; over v3, ganesha refuses a missing export as it refuses a locked one.
    let refused = |name: &str| match version {
        3 => format!("refused: the server will not mount {}", export(name)),
        _ => format!("no such export: {}", export(name)),
    };
    for name in ["nothing", "locked"] {
        let h = health_of(on(name, false)).await;
        assert!(h.reason.starts_with(&refused(name)), "{name}: {h:?}");
    }
    let h = health_of(on("privileged", false)).await;
    match version {
        3 => assert!(
            h.reason.starts_with("refused: the server denied the call")
                && h.reason.contains("privileged_port = true"),
            "{h:?}"
        ),
        _ => assert!(h.reason.starts_with(&refused("privileged")), "{h:?}"),
    }
    // Binding a port below 1024 needs root (the tests' machines run as root).
    if unsafe { libc::geteuid() } == 0 {
        let h = health_of(on("privileged", true)).await;
        assert!(h.is_healthy(), "{h:?}");
    }
    assert!(health_of(server.settings(version)).await.is_healthy());

    let mut table = server.settings(version);
    for key in ["port", "mount_port"] {
        let nobody = musicfs_tests::s3_server::free_port();
        table.insert(key.into(), i64::from(nobody).into());
    }
    let h = health_of(table).await;
    assert!(h.reason.starts_with("unreachable:"), "{h:?}");
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_what_is_wrong_over_v3() {
    health_names_what_is_wrong(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_what_is_wrong_over_v4() {
    health_names_what_is_wrong(4).await;
}

/// Links on the export, which the client resolves: relative and absolute
/// ones to a file and a folder inside the export, followed (and read
/// through); a dangling one, one out of the export and one to a folder above
/// it, left out. Absolute text is read against the export's path, which for
/// NFSv4 is the pseudo path: there a link by server path is left out.
async fn links_are_followed_inside_the_export(version: u8) {
    use std::os::unix::fs::symlink;
    let server = NfsServer::start();
    let lib = &server.library;
    std::fs::create_dir_all(lib.join("real")).unwrap();
    std::fs::write(lib.join("real/a.flac"), b"a").unwrap();
    let outside = lib.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("b.flac"), b"bb").unwrap();
    symlink(lib.join("real/a.flac"), lib.join("absolute.flac")).unwrap();
    symlink("real/a.flac", lib.join("relative.flac")).unwrap();
    symlink("real", lib.join("albums")).unwrap();
    symlink("nowhere.flac", lib.join("dangling.flac")).unwrap();
    symlink("..", lib.join("real/up")).unwrap();
    symlink(&outside, lib.join("elsewhere")).unwrap();
    symlink("../outside/b.flac", lib.join("past-the-root.flac")).unwrap();

    let plugin = load_plugin(&plugin_library("musicfs_nfs")).unwrap();
    let origin = plugin
        .open(Settings::new("nas", server.settings(version)))
        .await
        .unwrap();
    let listing = origin_api::poller::walk(&*origin, 100).await.unwrap();
    let files: Vec<&str> = listing.files.keys().map(String::as_str).collect();
    let mut expected = vec!["albums/a.flac", "real/a.flac", "relative.flac"];
    if version == 3 {
        expected.insert(0, "absolute.flac");
    }
    assert_eq!(files, expected, "{listing:?}");
    assert!(listing.unlisted.is_empty(), "{listing:?}");
    for path in &expected {
        assert_eq!(origin.read(path, 0, 10).await.unwrap(), b"a", "{path}");
        assert_eq!(origin.stat(path).await.unwrap().size, 1, "{path}");
    }
    let e = origin.stat("elsewhere/b.flac").await.unwrap_err();
    assert_eq!(e.kind(), origin_api::ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_followed_inside_the_export_over_v3() {
    links_are_followed_inside_the_export(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_followed_inside_the_export_over_v4() {
    links_are_followed_inside_the_export(4).await;
}
