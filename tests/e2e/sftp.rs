//! The SFTP plugin, loaded from its `.so`, against a real OpenSSH `sshd` on
//! loopback.

use std::time::Duration;

use musicfs_tests::ssh_server::{SftpFixture, SshServer};
use musicfs_tests::{plugin_library, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::{HealthStatus, Settings};

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

/// The health of an origin opened with `table`, as `musicfs status` shows it.
async fn health_of(table: toml::Table) -> origin_api::Health {
    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    let origin = plugin.open(Settings::new("seedbox", table)).await.unwrap();
    origin.health().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_verified_and_each_refusal_says_why() {
    let server = SshServer::start();
    let fingerprint = server.fingerprint();
    let port = server.port.to_string();

    let unknown = server.scratch("empty_known_hosts");
    std::fs::write(&unknown, "").unwrap();
    let mut table = server.settings();
    table.insert("known_hosts".into(), unknown.display().to_string().into());
    let h = health_of(table.clone()).await;
    assert_eq!(h.status, HealthStatus::Unhealthy, "{h:?}");
    assert!(
        h.reason.starts_with("unknown host key: [127.0.0.1]:")
            && h.reason.contains(&fingerprint)
            && h.reason
                .contains(&format!("ssh-keyscan -p {port} 127.0.0.1 >> ")),
        "{h:?}"
    );

    // Pinned, the same unknown host is trusted; pinned to another key, not.
    table.insert("host_key_fingerprint".into(), fingerprint.clone().into());
    assert!(health_of(table.clone()).await.is_healthy());
    let other_pin = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    table.insert("host_key_fingerprint".into(), other_pin.into());
    let h = health_of(table).await;
    assert!(
        h.reason.starts_with("host key mismatch:")
            && h.reason.contains(&fingerprint)
            && h.reason.contains(other_pin),
        "{h:?}"
    );

    // known_hosts holds another ed25519 key for this host and port.
    let stranger = std::fs::read_to_string(server.stranger_key.with_extension("pub")).unwrap();
    let mut fields = stranger.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    let changed = server.scratch("changed_known_hosts");
    std::fs::write(&changed, format!("[127.0.0.1]:{port} {kind} {key}\n")).unwrap();
    let mut table = server.settings();
    table.insert("known_hosts".into(), changed.display().to_string().into());
    let h = health_of(table).await;
    assert!(
        h.reason.starts_with("host key mismatch:")
            && h.reason.contains(&fingerprint)
            && h.reason.contains("line 1"),
        "{h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_work_or_say_authentication_failed() {
    use musicfs_tests::ssh_server::PASSPHRASE;
    let server = SshServer::start();
    let with_key = |key: &std::path::Path| {
        let mut table = server.settings();
        table.insert("private_key".into(), key.display().to_string().into());
        table
    };

    let mut protected = with_key(&server.client_key_with_passphrase);
    protected.insert("private_key_passphrase".into(), PASSPHRASE.into());
    let h = health_of(protected.clone()).await;
    assert!(h.is_healthy(), "{h:?}");

    let h = health_of(with_key(&server.stranger_key)).await;
    assert!(h.reason.starts_with("authentication failed"), "{h:?}");

    let mut password = server.settings();
    password.remove("private_key");
    password.insert("password".into(), "not-the-password".into());
    let h = health_of(password).await;
    assert!(h.reason.starts_with("authentication failed"), "{h:?}");

    protected.insert("private_key_passphrase".into(), "wrong".into());
    let h = health_of(protected).await;
    assert!(
        h.reason.contains("private_key") && !h.reason.contains("wrong"),
        "{h:?}"
    );

    let mut nowhere = server.settings();
    let closed = musicfs_tests::s3_server::free_port();
    nowhere.insert("port".into(), i64::from(closed).into());
    let h = health_of(nowhere).await;
    assert!(h.reason.starts_with("unreachable"), "{h:?}");
}
