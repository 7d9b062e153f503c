//! The conformance suite, run on the local plugin loaded from its `.so`, in
//! this process and in a plugin process of its own (as the daemon runs it).

use musicfs_tests::{local_plugin, local_settings, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::{Origin, OriginResult};

/// Runs the whole suite on the origin `open` makes of a fixture folder.
async fn passes<F>(open: impl FnOnce(std::path::PathBuf) -> F)
where
    F: std::future::Future<Output = OriginResult<std::sync::Arc<dyn Origin>>>,
{
    let dir = tempfile::tempdir().unwrap();
    let fixture = LocalFixture {
        root: dir.path().to_owned(),
    };
    let sparse = testkit::populate(&fixture).await.unwrap();
    assert!(sparse, "a local folder can hold a sparse file");
    let origin = open(dir.path().to_owned()).await.unwrap();
    let report = testkit::run(&*origin, &fixture, sparse, &Options::default()).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), 14, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_passes_the_conformance_suite() {
    let plugin = load_plugin(&local_plugin()).unwrap();
    passes(|root| async move { plugin.open(local_settings("music", &root)).await }).await;
}

/// The same suite through the process boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_passes_the_conformance_suite_from_its_own_process() {
    let process = musicfs::plugins::process::PluginProcess::start(
        &local_plugin(),
        musicfs_tests::plugin_processes(),
    )
    .await
    .unwrap();
    let opener = process.clone();
    passes(|root| async move { opener.open(local_settings("music", &root)).await }).await;
    process.shutdown().await;
}
