//! Calls across the boundary: a panicking plugin fails one call and nothing else; a
//! hung call ends at the host's deadline, cancels the plugin's task, and does not
//! hold up other calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs::origins::registry::RegisteredOrigin;
use musicfs_tests::plugin_library;
use origin_api::host::{load_plugin, LoadedPlugin};
use origin_api::{ErrorKind, HealthStatus, Settings};

fn faulty() -> LoadedPlugin {
    load_plugin(&plugin_library("musicfs_test_faulty")).unwrap()
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    let table = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::from(*v)))
        .collect();
    Settings::new("faulty", table)
}

async fn registered(
    plugin: &LoadedPlugin,
    pairs: &[(&str, &str)],
    deadline: Duration,
) -> RegisteredOrigin {
    let origin = plugin.open(settings(pairs)).await.unwrap();
    RegisteredOrigin::new(
        "f".into(),
        "faulty".into(),
        1,
        "0".into(),
        "h".into(),
        origin,
        deadline,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_only_that_call() {
    let plugin = faulty();
    let origin = registered(&plugin, &[("panic_in", "read")], Duration::from_secs(5)).await;
    for _ in 0..3 {
        let err = origin.read("data.bin", 0, 10).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Other);
        assert!(
            err.message()
                .contains("plugin panicked in read: faulty: injected panic in read"),
            "{err}"
        );
    }
    assert_eq!(origin.stat("data.bin").await.unwrap().size, 1 << 20);
    assert!(origin.health().await.is_healthy());

    let health = registered(&plugin, &[("panic_in", "health")], Duration::from_secs(5))
        .await
        .health()
        .await;
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(
        health.reason.contains("injected panic in health"),
        "{}",
        health.reason
    );

    let err = plugin
        .open(settings(&[("panic_in", "open")]))
        .await
        .err()
        .unwrap();
    assert!(err.message().contains("plugin panicked in open"), "{err}");
    // The plugin still opens origins after all that.
    assert!(plugin.open(settings(&[])).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_ends_at_the_deadline_and_is_cancelled_in_the_plugin() {
    let plugin = faulty();
    let deadline = Duration::from_millis(300);
    let origin = Arc::new(registered(&plugin, &[("hang_in", "read")], deadline).await);

    let started = Instant::now();
    let hung = tokio::spawn({
        let origin = origin.clone();
        async move { origin.read("data.bin", 0, 10).await }
    });
    // Other calls go on while the read hangs.
    let meta = origin.stat("data.bin").await.unwrap();
    assert_eq!(meta.size, 1 << 20);
    assert!(
        started.elapsed() < deadline,
        "stat waited for the hung read"
    );

    let err = hung.await.unwrap().unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took >= deadline && took < deadline * 4, "took {took:?}");

    // Dropping the host's future aborted the plugin's task: the plugin saw its read
    // future dropped (it reports the count as the size of `cancelled-reads`).
    let mut cancelled = 0;
    for _ in 0..50 {
        cancelled = origin.stat("cancelled-reads").await.unwrap().size;
        if cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancelled, 1, "the plugin's read task was not cancelled");
    assert_eq!(origin.calls_in_flight(), 0);
}
