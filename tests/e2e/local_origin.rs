//! What the conformance suite cannot know about the local plugin: its settings, and
//! that nothing outside the root can be reached.

use musicfs_tests::{local_plugin, local_settings};
use origin_api::host::load_plugin;
use origin_api::{ErrorKind, HealthStatus, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_are_followed_only_inside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("Album")).unwrap();
    std::fs::write(root.path().join("Album/track.flac"), b"inside").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root.path().join("escape.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(root.path().join("Album"), root.path().join("alias")).unwrap();
    std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();

    let plugin = load_plugin(&local_plugin()).unwrap();
    let origin = plugin
        .open(local_settings("music", root.path()))
        .await
        .unwrap();

    for path in ["escape.txt", "escape-dir/secret.txt"] {
        let err = origin.read(path, 0, 100).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{path}: {err}");
    }
    for path in ["../etc/passwd", "/etc/passwd", "Album/../../x"] {
        assert!(
            origin.read(path, 0, 100).await.is_err(),
            "{path} was readable"
        );
    }
    assert_eq!(
        origin.read("alias/track.flac", 0, 100).await.unwrap(),
        b"inside"
    );

    let page = origin.list("", None, 100).await.unwrap();
    let mut names: Vec<_> = page.entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["Album", "alias"],
        "links leading out, and loops, are left out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_errors_name_the_key_and_a_missing_root_is_unhealthy() {
    let plugin = load_plugin(&local_plugin()).unwrap();

    let err = plugin
        .open(Settings::new("music", toml::Table::new()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("`path`"), "{err}");

    let mut table = toml::Table::new();
    table.insert("path".into(), 42.into());
    let err = plugin
        .open(Settings::new("music", table))
        .await
        .err()
        .unwrap();
    assert!(err.message().contains("`path` must be a string"), "{err}");

    let gone = tempfile::tempdir().unwrap().path().join("unplugged-drive");
    let origin = plugin.open(local_settings("music", &gone)).await.unwrap();
    let health = origin.health().await;
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(
        health.reason.contains("unplugged-drive"),
        "{}",
        health.reason
    );
    std::fs::create_dir_all(&gone).unwrap();
    assert!(
        origin.health().await.is_healthy(),
        "healthy once the folder appears"
    );
}
