//! The S3 plugin, loaded from its `.so`, against a real S3 server on loopback.

use std::time::Duration;

use musicfs_tests::plugin_library;
use musicfs_tests::s3_server::{S3Fixture, S3Server};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::{HealthStatus, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_plugin_passes_the_conformance_suite() {
    let server = S3Server::start();
    let fixture = S3Fixture {
        server: &server,
        prefix: "library".into(),
    };
    let sparse = testkit::populate(&fixture).await.unwrap();
    let plugin = load_plugin(&plugin_library("musicfs_s3")).unwrap();
    assert_eq!(plugin.info().kind, "s3");
    let origin = plugin
        .open(Settings::new("bucket", server.settings("library")))
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
    // Only the >4 GiB check is skipped (see S3Fixture::write_sparse).
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert_eq!(report.passed.len(), 10, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_missing_bucket_and_no_server_each_say_why() {
    let server = S3Server::start();
    let plugin = load_plugin(&plugin_library("musicfs_s3")).unwrap();
    let health = |table: toml::Table| {
        let plugin = &plugin;
        async move {
            plugin
                .open(Settings::new("bucket", table))
                .await
                .unwrap()
                .health()
                .await
        }
    };

    let mut wrong_secret = server.settings("");
    wrong_secret.insert("secret_access_key".into(), "not-the-secret".into());
    let h = health(wrong_secret).await;
    assert_eq!(
        (h.status, h.reason.as_str()),
        (HealthStatus::Unhealthy, "access denied"),
        "{h:?}"
    );

    let mut missing = server.settings("");
    missing.insert("bucket".into(), "no-such-bucket".into());
    let h = health(missing).await;
    assert_eq!(
        (h.status, h.reason.as_str()),
        (HealthStatus::Unhealthy, "no such bucket"),
        "{h:?}"
    );

    let mut nowhere = server.settings("");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    nowhere.insert(
        "endpoint".into(),
        format!("http://127.0.0.1:{closed}").into(),
    );
    let h = health(nowhere).await;
    assert_eq!(
        (h.status, h.reason.as_str()),
        (HealthStatus::Unhealthy, "unreachable"),
        "{h:?}"
    );

    let h = health(server.settings("")).await;
    assert!(h.is_healthy(), "{h:?}");
}
