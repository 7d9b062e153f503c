//! Unregistering an origin stops its watches: no event arrives afterwards.

use std::time::Duration;

use musicfs::origins::registry::{RegisteredOrigin, Registry};
use musicfs::telemetry::events::EventBus;
use musicfs_tests::{local_plugin, local_settings};
use origin_api::host::load_plugin;
use origin_api::ChangeKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watch_event_arrives_after_unregister() {
    let music = tempfile::tempdir().unwrap();
    let plugin = load_plugin(&local_plugin()).unwrap();
    let origin = plugin
        .open(local_settings("music", music.path()))
        .await
        .unwrap();
    let registry = Registry::new(EventBus::default());
    let registered = registry
        .register(RegisteredOrigin::new(
            "music".into(),
            "local".into(),
            1,
            "0.1.0".into(),
            "hash".into(),
            origin,
            Duration::from_secs(5),
        ))
        .await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    registered
        .watch(move |event| {
            let _ = tx.send(event);
        })
        .await
        .unwrap();

    std::fs::write(music.path().join("before.flac"), b"x").unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event for a new file")
        .unwrap();
    assert_eq!(
        (event.kind, event.path.as_str()),
        (ChangeKind::Created, "before.flac")
    );

    assert!(registry.unregister("music").await);
    std::fs::write(music.path().join("after.flac"), b"y").unwrap();
    // The sink dropped its receiver when it closed, so the channel ends instead of
    // waiting: proof that nothing can be delivered any more.
    let after = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
    assert!(matches!(after, Ok(None)), "after unregister: {after:?}");
    assert!(registry.get("music").is_none());
}
