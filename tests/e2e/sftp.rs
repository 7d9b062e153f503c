//! The SFTP plugin, loaded from its `.so`, against a real OpenSSH `sshd` on
//! loopback.

use std::time::Duration;

use musicfs_tests::ssh_server::{SftpFixture, SshServer};
use musicfs_tests::{plugin_library, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::Settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_plugin_passes_the_conformance_suite() {
    let server = SshServer::start();
    let fixture = SftpFixture(LocalFixture {
        root: server.library.clone(),
    });
    let sparse = testkit::populate(&fixture).await.unwrap();
    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    assert_eq!(plugin.info().kind, "sftp");
    let origin = plugin
        .open(Settings::new("seedbox", server.settings()))
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
