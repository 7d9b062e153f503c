//! A plugin's `tracing` events, and its panics, reach the host's log with the
//! plugin's name, whether it is loaded in this process or runs in a plugin
//! process of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use musicfs_tests::plugin_library;
use origin_api::host::load_plugin;
use origin_api::Settings;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Captured = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

struct Capture(Captured);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        fields.insert("target".into(), event.metadata().target().to_owned());
        fields.insert("level".into(), event.metadata().level().to_string());
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

/// The faulty plugin's origin `id`, whose reads panic: loaded here, or in a
/// plugin process as the daemon runs it.
async fn panicking_origin(id: &str, apart: bool) -> Arc<dyn origin_api::Origin> {
    let mut table = toml::Table::new();
    table.insert("panic_in".into(), "read".into());
    let library = plugin_library("musicfs_test_faulty");
    if apart {
        let process = musicfs::plugins::process::PluginProcess::start(
            &library,
            musicfs_tests::plugin_processes(),
        )
        .await
        .unwrap();
        return process.open(Settings::new(id, table)).await.unwrap();
    }
    // Kept loaded for the rest of the test binary.
    let plugin = Box::leak(Box::new(load_plugin(&library).unwrap()));
    plugin.open(Settings::new(id, table)).await.unwrap()
}

fn assert_logged(captured: &Captured, id: &str) {
    let events = captured.lock().unwrap().clone();
    let from_plugin: Vec<_> = events
        .iter()
        .filter(|e| {
            e["target"] == "musicfs::plugin"
                && e.get("plugin").map(String::as_str) == Some("faulty")
        })
        .collect();
    assert!(
        from_plugin.iter().any(|e| e["level"] == "INFO"
            && e["message"].contains("faulty origin opening")
            && e["message"].contains(&format!("origin={id}"))),
        "{events:#?}"
    );
    assert!(
        from_plugin
            .iter()
            .any(|e| e["level"] == "ERROR" && e["message"].contains("injected panic in read")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_events_and_panics_reach_the_host_log() {
    let captured: Captured = Arc::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(Capture(captured.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // Loaded into this process, and in a plugin process of its own.
    for (id, apart) in [("logged", false), ("logged-apart", true)] {
        captured.lock().unwrap().clear();
        let origin = panicking_origin(id, apart).await;
        assert!(origin.read("data.bin", 0, 1).await.is_err());
        assert_logged(&captured, id);
    }
}
