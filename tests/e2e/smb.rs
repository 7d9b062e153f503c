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

/// A library on the share, mounted through `musicfs mount` at trace level:
/// identical reads, 8 readers at once, a wrong password named in `status`,
/// a file added on the share shown, smbd dying mid-read (the read fails, the
/// cached tracks play), and back with no remount; the password never logged.
#[test]
fn a_share_mounts_reads_in_parallel_and_survives_smbd_dying_mid_read() {
    use musicfs_tests::audio_library::{self, copy_tree, TRACKS};
    use musicfs_tests::bench_support::noise_file;
    use musicfs_tests::mounted::Mounted;
    use musicfs_tests::s3_server::{mount_args_for, origins_config};
    use musicfs_tests::smb_server::PASSWORD;
    use std::os::unix::fs::FileExt;

    const BIG: u64 = 64 << 20;
    const WRONG: &str = "wrong-password-not-for-logs-5e1f";
    let mut server = SmbServer::start();
    copy_tree(audio_library::shared(), &server.library);
    noise_file(&server.library.join("big/big.flac"), BIG, 31);
    let big_source = std::fs::read(server.library.join("big/big.flac")).unwrap();
    let big = "Unknown Artist/Unknown Album/big.flac";

    let nas = server.origin("nas");
    let mut wrong = server.origin("wrong-password");
    wrong.insert("password".into(), WRONG.into());
    let mut config = origins_config(vec![nas, wrong]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    health.insert("timeout_ms".into(), 3000i64.into());
    config.insert("health".into(), health.into());
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, "musicfs_smb");
    let mount = Mounted::start_logging(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some(big),
        "trace",
    );

    for track in TRACKS {
        let through = std::fs::read(mount.path(track.shown_as)).unwrap();
        let source = std::fs::read(server.library.join(track.source)).unwrap();
        assert!(through == source, "{} differs", track.shown_as);
    }

    // 8 readers of 8 uncached stretches at once, on one SMB session.
    let stretch = BIG / 16;
    std::thread::scope(|s| {
        for i in 0..8u64 {
            let (path, source) = (mount.path(big), &big_source);
            s.spawn(move || {
                let file = std::fs::File::open(path).unwrap();
                let at = (2 * i + 1) * stretch;
                let mut buf = vec![0u8; 1 << 20];
                file.read_exact_at(&mut buf, at).unwrap();
                assert!(buf[..] == source[at as usize..at as usize + buf.len()]);
            });
        }
    });

    let status = || {
        let out = std::process::Command::new(musicfs_tests::musicfs_binary())
            .args(["status", "--mount"])
            .arg(&mount.mountpoint)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let line = |status: &str, id: &str| {
        status
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in {status}"))
            .to_owned()
    };
    mount.wait_until(Duration::from_secs(30), |_| {
        line(&status(), "wrong-password").contains("authentication failed")
    });
    assert!(line(&status(), "nas").contains("healthy"), "{}", status());

    // A file put on the share shows through the mount.
    noise_file(&server.library.join("Added/new.flac"), 1 << 16, 32);
    mount.wait_until(Duration::from_secs(30), |m| {
        m.path("Unknown Artist/Unknown Album/new.flac").exists()
    });

    // smbd dies while a sequential read of the uncached start is going on:
    // the read fails (EIO) rather than hang; the cached tracks still play.
    mount.read_ends_when_interrupted(big, BIG, || server.pause());
    for track in TRACKS {
        assert!(
            std::fs::read(mount.path(track.shown_as)).is_ok(),
            "{} offline",
            track.shown_as
        );
    }

    // smbd is back: the origin comes back with no remount.
    server.resume();
    let at = BIG as usize - (4 << 20);
    mount.wait_until(Duration::from_secs(30), |m| {
        let mut buf = vec![0u8; 4096];
        let file = std::fs::File::open(m.path(big)).unwrap();
        file.read_exact_at(&mut buf, at as u64).is_ok() && buf[..] == big_source[at..at + 4096]
    });

    let log = mount.stop();
    assert!(log.contains("TRACE"), "the daemon logged at trace level");
    for secret in [PASSWORD, WRONG] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

/// With the poll interval an hour, changes are still reported, because
/// CHANGE_NOTIFY nudges the poller: a file another client puts in a new
/// folder through the server, one it deletes below, and one put in the top
/// folder on the server's own disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notification_reports_changes_between_polls() {
    use origin_api::{ChangeKind, EventSink};
    let server = SmbServer::start();
    std::fs::create_dir_all(server.library.join("Artist/Album")).unwrap();
    std::fs::write(server.library.join("Artist/Album/old.flac"), b"old").unwrap();
    let mut settings = server.settings();
    settings.insert("poll_interval_secs".into(), 3600i64.into());
    let plugin = load_plugin(&plugin_library("musicfs_smb")).unwrap();
    let origin = plugin.open(Settings::new("nas", settings)).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = EventSink::new(move |e| {
        let _ = tx.send(e);
    });
    let handle = origin.watch(sink).await.unwrap();
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), b"new").unwrap();
    let server_ = &server;
    let put = format!("mkdir Added; put {} Added/new.flac", local.path().display());
    tokio::task::block_in_place(|| server_.other_client(&put));
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (ChangeKind::Created, "Added/new.flac")
    );
    tokio::task::block_in_place(|| server_.other_client("del Artist/Album/old.flac"));
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (ChangeKind::Removed, "Artist/Album/old.flac")
    );
    let on_disk = server.library.join("top.flac");
    std::fs::write(on_disk.with_extension("part"), b"top").unwrap();
    std::fs::rename(on_disk.with_extension("part"), &on_disk).unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (ChangeKind::Created, "top.flac")
    );
    drop(handle);
}

/// The next change event. A hang detector, not a speed bound: without
/// notification the next poll is an hour away.
async fn next_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<origin_api::ChangeEvent>,
) -> origin_api::ChangeEvent {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("no event: change notification did not nudge the poller")
        .unwrap()
}
