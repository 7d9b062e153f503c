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

/// A library on the server, mounted through `musicfs mount` with the SFTP
/// plugin logging in with a passphrase-protected key, at trace level.
#[test]
fn a_server_mounts_reads_in_parallel_and_survives_sshd_dying_mid_read() {
    use musicfs_tests::audio_library::{self, copy_tree, TRACKS};
    use musicfs_tests::bench_support::noise_file;
    use musicfs_tests::mounted::Mounted;
    use musicfs_tests::s3_server::{mount_args_for, origins_config};
    use musicfs_tests::ssh_server::PASSPHRASE;
    use std::os::unix::fs::FileExt;

    const BIG: u64 = 96 << 20;
    const PASSWORD: &str = "password-not-for-logs-91c2";
    let mut server = SshServer::start();
    copy_tree(audio_library::shared(), &server.library);
    noise_file(&server.library.join("big/big.flac"), BIG, 11);
    let big_source = std::fs::read(server.library.join("big/big.flac")).unwrap();
    let big = "Unknown Artist/Unknown Album/big.flac";

    let mut seedbox = server.origin("seedbox");
    let key = server.client_key_with_passphrase.display().to_string();
    seedbox.insert("private_key".into(), key.into());
    seedbox.insert("private_key_passphrase".into(), PASSPHRASE.into());
    let mut wrong = server.origin("wrong-password");
    wrong.remove("private_key");
    wrong.insert("password".into(), PASSWORD.into());
    let mut stranger = server.origin("stranger");
    let empty = server.scratch("no_known_hosts");
    std::fs::write(&empty, "").unwrap();
    stranger.insert("known_hosts".into(), empty.display().to_string().into());
    let mut config = origins_config(vec![seedbox, wrong, stranger]);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    health.insert("timeout_ms".into(), 3000i64.into());
    config.insert("health".into(), health.into());
    let work = tempfile::tempdir().unwrap();
    let args = mount_args_for(work.path(), &config, "musicfs_sftp");
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

    // 8 readers of 8 uncached stretches at once: all right, over the pool's
    // 4 connections (sshd serves each in a process of its own).
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
    mount.wait_until(Duration::from_secs(30), |_| server.sessions() >= 4);

    let status = std::process::Command::new(musicfs_tests::musicfs_binary())
        .args(["status", "--mount"])
        .arg(&mount.mountpoint)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let line = |id: &str| {
        status
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in {status}"))
            .to_owned()
    };
    assert!(line("seedbox").contains("healthy"), "{status}");
    assert!(
        line("wrong-password").contains("authentication failed"),
        "{status}"
    );
    assert!(
        line("stranger").contains("unknown host key")
            && line("stranger").contains(&server.fingerprint()),
        "{status}"
    );

    // sshd dies while a sequential read of the uncached start is going on:
    // the read fails (EIO) rather than hang; the cached tracks still play.
    mount.read_ends_when_interrupted(big, BIG, || server.pause());
    for track in TRACKS {
        assert!(
            std::fs::read(mount.path(track.shown_as)).is_ok(),
            "{} offline",
            track.shown_as
        );
    }

    // sshd is back: the origin comes back with no remount.
    server.resume();
    let at = BIG as usize - (4 << 20);
    mount.wait_until(Duration::from_secs(30), |m| {
        let mut buf = vec![0u8; 4096];
        let file = std::fs::File::open(m.path(big)).unwrap();
        file.read_exact_at(&mut buf, at as u64).is_ok() && buf[..] == big_source[at..at + 4096]
    });

    let log = mount.stop();
    assert!(log.contains("TRACE"), "the daemon logged at trace level");
    for secret in [PASSPHRASE, PASSWORD] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
    let key = std::fs::read_to_string(&server.client_key_with_passphrase).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the private key reached the log");
    }
}

/// `musicfs scan --origin sftp://user@host:port/path` with `home` as `$HOME`
/// and `agent` as `$SSH_AUTH_SOCK`: whether it found the whole library, and
/// what it said.
fn quick_scan(
    server: &SshServer,
    home: &std::path::Path,
    agent: Option<&std::path::Path>,
) -> (bool, String) {
    use musicfs_tests::audio_library::{self, copy_tree, TRACKS};
    copy_tree(audio_library::shared(), &server.library);
    // The tracks and an album's cover (its liner notes are not shown).
    let files = TRACKS.len() + 1;
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::copy(&server.known_hosts, ssh.join("known_hosts")).unwrap();
    let plugins = home.join("plugins");
    musicfs_tests::install_plugin(&plugins, "musicfs_sftp");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let url = format!(
        "sftp://{user}@127.0.0.1:{}{}",
        server.port,
        server.library.display()
    );
    let mut scan = std::process::Command::new(musicfs_tests::musicfs_binary());
    scan.arg("scan")
        .arg("--plugins")
        .arg(&plugins)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(["--origin", &url])
        .env("HOME", home);
    match agent {
        Some(socket) => scan.env("SSH_AUTH_SOCK", socket),
        None => scan.env_remove("SSH_AUTH_SOCK"),
    };
    let scanned = scan.output().unwrap();
    let out = String::from_utf8_lossy(&scanned.stdout);
    (
        scanned.status.success() && out.contains(&format!("{files} tracks in the library")),
        format!("{out}\n{}", String::from_utf8_lossy(&scanned.stderr)),
    )
}

/// `--origin sftp://user@host:port/path` alone: the host key from
/// `~/.ssh/known_hosts` and the login from `~/.ssh/id_ed25519`, as `ssh` would.
#[test]
fn the_quick_form_finds_the_usual_keys_and_known_hosts() {
    let server = SshServer::start();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::copy(&server.client_key, home.path().join(".ssh/id_ed25519")).unwrap();
    let (found, said) = quick_scan(&server, home.path(), None);
    assert!(found, "{said}");
}

/// The quick form with no key files but an SSH agent holding the key (a real
/// `ssh-agent`): it logs in with the agent's key.
#[test]
fn the_quick_form_logs_in_with_the_agent() {
    use std::process::{Command, Stdio};
    let server = SshServer::start();
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent runs (apt-get install openssh-client)");
    let started = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no agent socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(&server.client_key)
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success(), "ssh-add failed");
    let (found, said) = quick_scan(&server, home.path(), Some(&socket));
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(found, "{said}");
}

/// Links on the server: to a file and to a folder elsewhere, followed; a
/// dangling one and one to a folder above it, left out (the second would
/// repeat the tree without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_followed_unless_dangling_or_leading_up() {
    use std::os::unix::fs::symlink;
    let server = SshServer::start();
    let lib = &server.library;
    std::fs::create_dir_all(lib.join("real")).unwrap();
    std::fs::write(lib.join("real/a.flac"), b"a").unwrap();
    let outside = server.scratch("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("b.flac"), b"bb").unwrap();
    symlink(lib.join("real/a.flac"), lib.join("link.flac")).unwrap();
    symlink(lib.join("nowhere.flac"), lib.join("dangling.flac")).unwrap();
    symlink(lib, lib.join("real/up")).unwrap();
    symlink(&outside, lib.join("elsewhere")).unwrap();

    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    let origin = plugin
        .open(Settings::new("seedbox", server.settings()))
        .await
        .unwrap();
    let listing = origin_api::poller::walk(&*origin, 100).await.unwrap();
    let files: Vec<(&str, u64)> = listing
        .files
        .iter()
        .map(|(path, seen)| (path.as_str(), seen.size))
        .collect();
    assert_eq!(
        files,
        [
            ("elsewhere/b.flac", 2),
            ("link.flac", 1),
            ("real/a.flac", 1)
        ],
        "{listing:?}"
    );
    assert!(listing.unlisted.is_empty(), "{listing:?}");
}

/// Streams dropped early, before their first piece or after it, leave no
/// file open on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_streams_close_their_handles_on_the_server() {
    let server = SshServer::start();
    musicfs_tests::bench_support::noise_file(&server.library.join("big.flac"), 8 << 20, 3);
    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    let mut settings = server.settings();
    settings.insert("connections".into(), 1i64.into());
    let origin = plugin
        .open(Settings::new("seedbox", settings))
        .await
        .unwrap();
    assert!(origin.health().await.is_healthy());
    let baseline = server.open_files();
    for i in 0..40u64 {
        let mut stream = origin.read_stream("big.flac", i << 16, 4 << 20, None);
        if i % 2 == 0 {
            assert!(stream.next().await.unwrap().is_ok());
        } else {
            // Polled once (the open under way), then dropped.
            let _ = tokio::time::timeout(Duration::ZERO, stream.next()).await;
        }
    }
    let started = std::time::Instant::now();
    while server.open_files() > baseline {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} files open on the server, {baseline} before",
            server.open_files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With the server refusing the login, calls fail at once with the reason
/// and the server is not dialled again on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_not_retried_on_every_call() {
    let server = SshServer::start();
    let mut table = server.settings();
    table.insert(
        "private_key".into(),
        server.stranger_key.display().to_string().into(),
    );
    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    let origin = plugin.open(Settings::new("seedbox", table)).await.unwrap();
    for _ in 0..50 {
        let e = origin.stat("a.flac").await.unwrap_err();
        assert!(e.message().starts_with("authentication failed"), "{e}");
    }
    drop(origin);
    // Each refused login is logged by its session process as it ends.
    let dialled = || {
        let log = server.log();
        log.matches("Connection closed by authenticating user")
            .count()
            + log.matches("Disconnected from authenticating user").count()
    };
    let started = std::time::Instant::now();
    while server.sessions() > 0 || dialled() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no refused login logged:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dialled() <= 2, "{} logins:\n{}", dialled(), server.log());
}

/// Regression: with more than 128 files open at once on one connection,
/// OpenSSH's 129th handle (`00 00 00 80`) came back from russh-sftp's lossy
/// `String` mangled, and the server answered `Failure` to every request on it,
/// its close included (a scan 50 ms away, 128 tag reads at once, lost its
/// origin for a health interval). 200 streams begun together on one
/// connection (their opens sent before any close) all read, and leave
/// nothing open on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_open_at_once_than_handles_all_read() {
    let server = SshServer::start();
    for i in 0..200 {
        std::fs::write(
            server.library.join(format!("{i}.flac")),
            format!("track {i}"),
        )
        .unwrap();
    }
    let plugin = load_plugin(&plugin_library("musicfs_sftp")).unwrap();
    let mut settings = server.settings();
    settings.insert("connections".into(), 1i64.into());
    let origin = std::sync::Arc::new(
        plugin
            .open(Settings::new("seedbox", settings))
            .await
            .unwrap(),
    );
    assert!(origin.health().await.is_healthy());
    let baseline = server.open_files();
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..200 {
        let origin = origin.clone();
        reads.spawn(async move {
            let path = format!("{i}.flac");
            let mut stream = origin.read_stream(&path, 0, 64, None);
            let piece = stream.next().await.unwrap().unwrap();
            assert_eq!(&piece[..], format!("track {i}").as_bytes());
        });
    }
    while let Some(read) = reads.join_next().await {
        read.unwrap();
    }
    let started = std::time::Instant::now();
    while server.open_files() > baseline {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} files left open on the server: {:?}",
            server.open_files(),
            open_below(&server.library)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The files below `dir` some process holds open.
fn open_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for pid in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(pid.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(dir) {
                    found.push(target);
                }
            }
        }
    }
    found
}
