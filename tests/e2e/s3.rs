//! The S3 plugin, loaded from its `.so`, against a real S3 server on loopback.

use std::time::Duration;

use musicfs_tests::plugin_library;
use musicfs_tests::s3_server::{free_port, mount_args, origins_config, S3Fixture, S3Server};
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
    assert_eq!(report.passed.len(), 13, "{report}");
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
    let closed = free_port();
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

/// A library in the bucket, mounted through `musicfs mount` with the S3 plugin.
#[test]
fn a_bucket_mounts_reads_back_identical_and_survives_the_server_going_away() {
    use musicfs_tests::audio_library::{self, copy_tree, TRACKS};
    use musicfs_tests::mounted::Mounted;
    use musicfs_tests::s3_server::SECRET_KEY;
    use std::os::unix::fs::FileExt;
    use std::time::Instant;

    let mut server = S3Server::start();
    copy_tree(audio_library::shared(), &server.object_path("lib"));
    // One long track whose body the scan leaves uncached.
    let tags = [("title", "Long"), ("artist", "Remote"), ("album", "Bucket")];
    audio_library::ffmpeg(
        "anoisesrc=duration=8",
        &tags,
        &[],
        &server.object_path("lib/long/long.flac"),
    );
    let long_source = std::fs::read(server.object_path("lib/long/long.flac")).unwrap();

    let work = tempfile::tempdir().unwrap();
    let mut wrong = server.origin("wrong-secret", "lib");
    wrong.insert("secret_access_key".into(), "wrong".into());
    let mut config = origins_config(vec![server.origin("bucket", "lib"), wrong]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    health.insert("timeout_ms".into(), 2000i64.into());
    config.insert("health".into(), health.into());
    let args = mount_args(work.path(), &config);

    let mount = Mounted::start_logging(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some("Remote/Bucket/Long.flac"),
        "trace",
    );
    for track in TRACKS {
        let through = std::fs::read(mount.path(track.shown_as)).unwrap();
        assert_eq!(
            through,
            std::fs::read(server.object_path(&format!("lib/{}", track.source))).unwrap(),
            "{}",
            track.shown_as
        );
    }
    let status = std::process::Command::new(musicfs_tests::musicfs_binary())
        .args(["status", "--mount"])
        .arg(&mount.mountpoint)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    // Registered though unhealthy (it may come right), with its reason.
    assert!(
        status.lines().any(|l| l.starts_with("wrong-secret")
            && l.contains("unhealthy")
            && l.ends_with("access denied")),
        "{status}"
    );

    // The server goes away: cached files still read, uncached bytes fail fast.
    server.pause();
    for track in TRACKS {
        assert!(
            std::fs::read(mount.path(track.shown_as)).is_ok(),
            "{} offline",
            track.shown_as
        );
    }
    let long = std::fs::File::open(mount.path("Remote/Bucket/Long.flac")).unwrap();
    let started = Instant::now();
    let err = long
        .read_at(&mut [0u8; 4096], long_source.len() as u64 / 2)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "EIO took {:?}",
        started.elapsed()
    );

    // It comes back: the origin is healthy again without remounting.
    server.resume();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        match long.read_at(&mut buf, long_source.len() as u64 / 2) {
            Ok(n) => {
                let at = long_source.len() / 2;
                assert_eq!(&buf[..n], &long_source[at..at + n]);
                break;
            }
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO));
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("still failing after the server came back: {e}"),
        }
    }

    drop(long);
    let log = mount.stop();
    assert!(log.contains("TRACE"), "the daemon logged at trace level");
    assert!(!log.contains(SECRET_KEY), "the secret key reached the log");
}

/// A sequential reader of an uncached object: the read path and its read-ahead
/// (two windows in flight) never fetch a byte twice, and large windows keep the
/// number of GETs low, since each costs a remote store a round trip and money.
#[test]
fn a_sequential_read_fetches_each_byte_once_in_few_requests() {
    use musicfs_tests::bench_support::noise_file;
    use musicfs_tests::mounted::Mounted;
    use std::io::Read;

    const SIZE: u64 = 40 << 20;
    let work = tempfile::tempdir().unwrap();
    let server = S3Server::start_logging(Some(&work.path().join("requests.log")));
    noise_file(&server.object_path("lib/noise.flac"), SIZE, 7);
    let source = std::fs::read(server.object_path("lib/noise.flac")).unwrap();

    let args = mount_args(
        work.path(),
        &origins_config(vec![server.origin("bucket", "lib")]),
    );
    let shown = "Unknown Artist/Unknown Album/noise.flac";
    let mount = Mounted::start(work.path(), &work.path().join("cache"), &args, Some(shown));
    let scanned = server.served_ranges().len();

    let mut through = Vec::new();
    let mut file = std::fs::File::open(mount.path(shown)).unwrap();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        through.extend_from_slice(&buf[..n]);
    }
    assert!(through == source, "the object reads back identical");

    let mut ranges = server.served_ranges();
    let read_gets = ranges.len() - scanned;
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "bytes fetched twice: {:?} and {:?} (all: {ranges:?})",
            pair[0],
            pair[1]
        );
    }
    assert_eq!(
        ranges.iter().map(|(a, b)| b - a).sum::<u64>(),
        SIZE,
        "every byte fetched once: {ranges:?}"
    );
    // 1 MiB first, then windows doubling to 32 MiB: a handful, not one per MiB.
    assert!(
        read_gets <= 6,
        "{read_gets} GETs to read 40 MiB: {ranges:?}"
    );
}
