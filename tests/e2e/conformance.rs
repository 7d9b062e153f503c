//! The conformance suite, run on the local plugin loaded from its `.so`.

use musicfs_tests::{local_plugin, local_settings, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = LocalFixture {
        root: dir.path().to_owned(),
    };
    let sparse = testkit::populate(&fixture).await.unwrap();
    assert!(sparse, "a local folder can hold a sparse file");

    let plugin = load_plugin(&local_plugin()).unwrap();
    let origin = plugin
        .open(local_settings("music", dir.path()))
        .await
        .unwrap();
    let report = testkit::run(&*origin, &fixture, sparse, &Options::default()).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), 14, "{report}");
}

/// The same suite through the process boundary: the local plugin served by a
/// plugin process, as the daemon runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_passes_the_conformance_suite_from_its_own_process() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = LocalFixture {
        root: dir.path().to_owned(),
    };
    let sparse = testkit::populate(&fixture).await.unwrap();
    let process = musicfs::plugins::process::PluginProcess::start(
        &local_plugin(),
        musicfs_tests::plugin_processes(),
    )
    .await
    .unwrap();
    let origin = process
        .open(local_settings("music", dir.path()))
        .await
        .unwrap();
    let report = testkit::run(&*origin, &fixture, sparse, &Options::default()).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), 14, "{report}");
    drop(origin);
    process.shutdown().await;
}
