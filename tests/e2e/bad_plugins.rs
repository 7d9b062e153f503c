//! Bad files in the plugins folder are named and skipped; the good ones load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use musicfs::config::{HealthConfig, OriginConfig};
use musicfs::origins::registry::Registry;
use musicfs::plugins::manager::PluginManager;
use musicfs::telemetry::events::{Event, EventBus};
use musicfs_tests::{local_plugin, musicfs_binary, plugin_library};

/// A shared library that is not a MusicFS plugin: the C math library.
fn foreign_library() -> PathBuf {
    let candidates = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib64/libm.so.6",
        "/lib64/libm.so.6",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libm.so.6 exists on a glibc system")
}

/// A plugins folder holding one of each kind of bad file, plus the local and faulty
/// plugins.
fn mixed_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, from: &Path| {
        std::fs::copy(from, dir.path().join(name)).unwrap();
    };
    put("local.so", &local_plugin());
    put("faulty.so", &plugin_library("musicfs_test_faulty"));
    put(
        "incompatible.so",
        &plugin_library("musicfs_test_incompatible"),
    );
    put(
        "ctor-panics.so",
        &plugin_library("musicfs_test_constructor_panics"),
    );
    put(
        "ctor-fails.so",
        &plugin_library("musicfs_test_constructor_fails"),
    );
    put("libm.so", &foreign_library());
    std::fs::write(
        dir.path().join("garbage.so"),
        b"this is not a library at all",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), b"plugins go here").unwrap();
    dir
}

#[test]
fn plugins_command_gives_each_file_its_verdict() {
    let dir = mixed_folder();
    let out = Command::new(musicfs_binary())
        .args(["plugins", "--plugins"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = |name: &str| -> String {
        stdout
            .lines()
            .find(|l| l.starts_with(&dir.path().join(name).display().to_string()))
            .unwrap_or_else(|| panic!("no line for {name} in\n{stdout}"))
            .to_owned()
    };
    assert!(verdict("local.so").contains(&format!(
        "loaded: kind local, version 0.1.0, origin-api {}, local",
        origin_api::API_VERSION
    )));
    assert!(verdict("faulty.so").contains("loaded: kind faulty"));
    assert!(verdict("incompatible.so").contains(
        "rejected: built for origin-api 0.0.1, host needs 1.x — rebuild it against origin-api 1.x"
    ));
    assert!(verdict("ctor-panics.so").contains(
        "rejected: failed to start: plugin panicked in its constructor: constructor-panics"
    ));
    assert!(verdict("ctor-fails.so")
        .contains("rejected: failed to start: plugin constructor failed: constructor-fails: no backend library found"));
    assert!(verdict("libm.so").contains("rejected: not a MusicFS plugin"));
    assert!(verdict("garbage.so").contains("rejected: not a shared library (not an ELF file)"));
    assert!(verdict("README.txt").contains("skipped: not named like a shared library (*.so)"));
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
}

#[test]
fn plugins_command_fails_when_nothing_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.so"), b"nope").unwrap();
    std::fs::copy(
        plugin_library("musicfs_test_incompatible"),
        dir.path().join("old.so"),
    )
    .unwrap();
    let out = Command::new(musicfs_binary())
        .args(["plugins", "--plugins"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no plugin loaded"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_skips_bad_plugins_and_serves_with_the_rest() {
    let plugins = mixed_folder();
    let music = tempfile::tempdir().unwrap();
    std::fs::write(music.path().join("song.flac"), b"fLaC...").unwrap();
    let state = tempfile::tempdir().unwrap();
    let origins = vec![OriginConfig {
        id: "music".into(),
        kind: "local".into(),
        priority: 1,
        enabled: true,
        settings: toml::toml! { path = (music.path().display().to_string()) },
    }];
    let events = EventBus::default();
    let mut rx = events.subscribe();
    let registry = Arc::new(Registry::new(events.clone()));
    let manager = PluginManager::new(
        plugins.path().to_owned(),
        state.path(),
        origins,
        HealthConfig::default(),
        musicfs_tests::plugin_processes(),
        registry.clone(),
        events,
    );
    manager.sync().await;

    let mut rejected = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let Event::PluginRejected { file, .. } = event {
            rejected.push(
                Path::new(&file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    rejected.sort();
    // README.txt is no candidate at all: left alone, not rejected.
    assert_eq!(
        rejected,
        [
            "ctor-fails.so",
            "ctor-panics.so",
            "garbage.so",
            "incompatible.so",
            "libm.so"
        ]
    );
    let mut kinds: Vec<_> = manager
        .running()
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["faulty", "local"]);
    let origin = registry
        .get("music")
        .expect("the local origin is registered");
    assert_eq!(origin.read("song.flac", 0, 100).await.unwrap(), b"fLaC...");

    // A second sync retries nothing that did not change.
    manager.sync().await;
    let retried = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
    assert!(
        retried.is_err(),
        "unchanged files were loaded again: {retried:?}"
    );
}
