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
