//! The SMB plugin, loaded from its `.so`, against a real Samba `smbd` on
//! loopback that signs and encrypts every message.

use std::time::Duration;

use musicfs_tests::smb_server::{Encryption, SmbServer};
use musicfs_tests::{plugin_library, LocalFixture};
use origin_api::host::load_plugin;
use origin_api::testkit::{self, Options};
use origin_api::Settings;

/// The share's folder, written to directly. Samba reports an open file's
/// write time as of its opening while any client holds it open, so a file
/// rewritten in place (same size) while it is streamed looks unchanged until
/// the stream ends: the suite replaces it by renaming over it.
struct SambaShare(LocalFixture);

#[async_trait::async_trait]
impl testkit::Fixture for SambaShare {
    async fn write(&self, path: &str, data: &[u8]) -> std::io::Result<()> {
        self.0.write(path, data).await
    }

    async fn write_sparse(&self, path: &str, size: u64, tail: &[u8]) -> std::io::Result<bool> {
        self.0.write_sparse(path, size, tail).await
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        self.0.remove(path).await
    }

    async fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.0.rename(from, to).await
    }

    fn in_place_rewrites_visible(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smb_plugin_passes_the_conformance_suite() {
    let server = SmbServer::start();
    let fixture = SambaShare(LocalFixture {
        root: server.library.clone(),
    });
    let sparse = testkit::populate(&fixture).await.unwrap();
    let plugin = load_plugin(&plugin_library("musicfs_smb")).unwrap();
    assert_eq!(plugin.info().kind, "smb");
    let origin = plugin
        .open(Settings::new("nas", server.settings()))
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

async fn health_of(table: toml::Table) -> origin_api::Health {
    let plugin = load_plugin(&plugin_library("musicfs_smb")).unwrap();
    let origin = plugin.open(Settings::new("nas", table)).await.unwrap();
    origin.health().await
}

/// Health says what is wrong, in the words a user would search for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_what_is_wrong() {
    let server = SmbServer::start();
    let healthy = health_of(server.settings()).await;
    assert!(healthy.is_healthy(), "{healthy:?}\n{}", server.log());

    let mut wrong = server.settings();
    wrong.insert("password".into(), "not the password".into());
    let said = health_of(wrong).await;
    assert!(said.reason.starts_with("authentication failed"), "{said:?}");

    let mut missing = server.settings();
    missing.insert("share".into(), "nothere".into());
    let said = health_of(missing).await;
    assert!(
        said.reason.starts_with("no such share: nothere"),
        "{said:?}"
    );

    let mut closed = server.settings();
    closed.insert(
        "port".into(),
        i64::from(musicfs_tests::s3_server::free_port()).into(),
    );
    let said = health_of(closed).await;
    assert!(said.reason.starts_with("unreachable"), "{said:?}");

    let plain = SmbServer::start_with(Encryption::Off);
    let mut insist = plain.settings();
    insist.insert("require_encryption".into(), true.into());
    let said = health_of(insist).await;
    assert!(said.reason.starts_with("encryption refused"), "{said:?}");
    let said = health_of(plain.settings()).await;
    assert!(said.is_healthy(), "{said:?}");

    // smb2 0.39 does not set SMB2_GLOBAL_CAP_ENCRYPTION, and Samba selects
    // no cipher without it: a share that requires encryption refuses it.
    let strict = SmbServer::start_with(Encryption::Required);
    let said = health_of(strict.settings()).await;
    assert!(said.reason.starts_with("refused at sign-in"), "{said:?}");
}
