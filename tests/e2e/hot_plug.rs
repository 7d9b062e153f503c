//! Hot plug while running: a plugin dropped into the folder brings its origins up,
//! a removed one takes them down, and a replaced one swaps in only after its checks
//! pass; otherwise the running version keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use musicfs::config::{HealthConfig, OriginConfig};
use musicfs::origins::registry::Registry;
use musicfs::plugins::manager::PluginManager;
use musicfs::telemetry::events::{Event, EventBus};
use musicfs_tests::{local_plugin, plugin_library, wait_for_event};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(10);

struct Host {
    manager: Arc<PluginManager>,
    registry: Arc<Registry>,
    rx: broadcast::Receiver<Event>,
    _state: tempfile::TempDir,
}

fn host(plugins: &Path, origins: Vec<OriginConfig>) -> Host {
    let state = tempfile::tempdir().unwrap();
    let events = EventBus::default();
    let rx = events.subscribe();
    let registry = Arc::new(Registry::new(events.clone()));
    let manager = Arc::new(PluginManager::new(
        plugins.to_owned(),
        state.path(),
        origins,
        HealthConfig::default(),
        musicfs_tests::plugin_processes(),
        registry.clone(),
        events,
    ));
    Host {
        manager,
        registry,
        rx,
        _state: state,
    }
}

fn origin(id: &str, kind: &str, settings: toml::Table) -> OriginConfig {
    OriginConfig {
        id: id.into(),
        kind: kind.into(),
        priority: 1,
        enabled: true,
        settings,
    }
}

/// Replaces `to` with `bytes` the way a package manager would: write beside, rename.
fn replace(to: &Path, bytes: &[u8]) {
    let temp = to.with_extension("partial");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_in_comes_up_and_a_removed_one_goes_down() {
    let plugins = tempfile::tempdir().unwrap();
    let music = tempfile::tempdir().unwrap();
    std::fs::write(music.path().join("song.flac"), b"fLaC").unwrap();
    let settings = toml::toml! { path = (music.path().display().to_string()) };
    let mut host = host(plugins.path(), vec![origin("music", "local", settings)]);

    host.manager.sync().await;
    host.manager.report_waiting().await;
    let waiting = wait_for_event(&mut host.rx, WAIT, |e| {
        matches!(e, Event::OriginWaiting { .. })
    })
    .await;
    assert_eq!(
        waiting,
        Event::OriginWaiting {
            id: "music".into(),
            reason: "waiting for plugin local".into()
        }
    );
    let _watch = host.manager.watch_folder().unwrap();

    std::fs::copy(local_plugin(), plugins.path().join("libmusicfs_local.so")).unwrap();
    wait_for_event(
        &mut host.rx,
        WAIT,
        |e| matches!(e, Event::OriginRegistered { id, .. } if id == "music"),
    )
    .await;
    let origin = host.registry.get("music").unwrap();
    assert_eq!(origin.read("song.flac", 0, 10).await.unwrap(), b"fLaC");

    std::fs::remove_file(plugins.path().join("libmusicfs_local.so")).unwrap();
    wait_for_event(
        &mut host.rx,
        WAIT,
        |e| matches!(e, Event::OriginUnregistered { id, .. } if id == "music"),
    )
    .await;
    wait_for_event(
        &mut host.rx,
        WAIT,
        |e| matches!(e, Event::PluginUnloaded { kind, .. } if kind == "local"),
    )
    .await;
    assert!(host.registry.get("music").is_none());
    // A call through an origin someone still holds is refused, not hung.
    let err = origin.read("song.flac", 0, 10).await.unwrap_err();
    assert_eq!(err.kind(), origin_api::ErrorKind::Unavailable, "{err}");

    // Dropping the same library in again brings the origin back.
    std::fs::copy(local_plugin(), plugins.path().join("libmusicfs_local.so")).unwrap();
    wait_for_event(
        &mut host.rx,
        WAIT,
        |e| matches!(e, Event::OriginRegistered { id, .. } if id == "music"),
    )
    .await;
    let origin = host.registry.get("music").unwrap();
    assert_eq!(origin.read("song.flac", 0, 10).await.unwrap(), b"fLaC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_swaps_in_only_when_its_checks_pass() {
    let plugins = tempfile::tempdir().unwrap();
    let flag = tempfile::tempdir().unwrap();
    let health_file = flag.path().join("unhealthy");
    let library = plugins.path().join("libmusicfs_test_faulty.so");
    let original = std::fs::read(plugin_library("musicfs_test_faulty")).unwrap();
    std::fs::write(&library, &original).unwrap();
    let settings = toml::toml! { health_file = (health_file.display().to_string()) };
    let mut host = host(plugins.path(), vec![origin("flaky", "faulty", settings)]);
    host.manager.sync().await;
    let first_hash = host
        .registry
        .get("flaky")
        .expect("registered")
        .plugin_hash
        .clone();
    let _watch = host.manager.watch_folder().unwrap();

    // 1. Garbage over the library: rejected, the running version keeps serving.
    replace(&library, b"\x7fELF but not really");
    wait_for_event(&mut host.rx, WAIT, |e| {
        matches!(e, Event::PluginRejected { .. })
    })
    .await;
    let running = host.registry.get("flaky").unwrap();
    assert_eq!(running.plugin_hash, first_hash);
    assert_eq!(running.read("data.bin", 0, 4).await.unwrap().len(), 4);

    // 2. A new build whose origin fails its health check: rejected, old one serves.
    std::fs::write(&health_file, "disk on fire").unwrap();
    let mut second_build = original.clone();
    second_build.push(0);
    replace(&library, &second_build);
    let rejected = wait_for_event(&mut host.rx, WAIT, |e| {
        matches!(e, Event::PluginRejected { .. })
    })
    .await;
    assert!(
        format!("{rejected:?}").contains("unhealthy: disk on fire"),
        "{rejected:?}"
    );
    let running = host.registry.get("flaky").unwrap();
    assert_eq!(running.plugin_hash, first_hash);
    assert_eq!(running.read("data.bin", 0, 4).await.unwrap().len(), 4);

    // 3. A good new build: loaded from its own copy, health-checked, swapped in.
    std::fs::remove_file(&health_file).unwrap();
    let mut third_build = original.clone();
    third_build.extend_from_slice(&[0, 0]);
    replace(&library, &third_build);
    // Its origins are registered first, then the plugin is announced.
    wait_for_event(
        &mut host.rx,
        WAIT,
        |e| matches!(e, Event::OriginRegistered { id, .. } if id == "flaky"),
    )
    .await;
    let loaded = wait_for_event(&mut host.rx, WAIT, |e| {
        matches!(e, Event::PluginLoaded { .. })
    })
    .await;
    let Event::PluginLoaded { hash, .. } = loaded else {
        unreachable!()
    };
    assert_ne!(hash, first_hash);
    let running = host.registry.get("flaky").unwrap();
    assert_eq!(running.plugin_hash, hash);
    assert_eq!(running.read("data.bin", 0, 4).await.unwrap().len(), 4);
    let mut kinds = host.manager.running().await;
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds.remove(0).0, "faulty");
}
