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
