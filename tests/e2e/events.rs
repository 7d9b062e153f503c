//! `musicfs events` follows a running mount: every read is a FileAccessed event.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use musicfs_tests::audio_library::{self, TRACKS};
use musicfs_tests::mounted::Mounted;

#[test]
fn every_read_is_published_as_file_accessed() {
    let work = tempfile::tempdir().unwrap();
    let origin = format!("local:{}", audio_library::shared().display());
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &["--origin".into(), origin],
        Some(TRACKS[1].shown_as),
    );

    let socket = musicfs::control::find_socket(Some(&mount.mountpoint)).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600, "the control socket is owner-only");
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    let mut follower = Command::new(musicfs_tests::musicfs_binary())
        .args(["events", "--mount"])
        .arg(&mount.mountpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Let the follower connect before reading.
    std::thread::sleep(Duration::from_millis(300));

    let file = std::fs::File::open(mount.path(TRACKS[1].shown_as)).unwrap();
    let mut buf = vec![0u8; 1000];
    file.read_at(&mut buf, 100).unwrap();

    let wanted = format!("\"path\":\"/{}\"", TRACKS[1].shown_as);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.contains("\"event\":\"FileAccessed\"") && line.contains(&wanted) => {
                break line
            }
            Ok(line) => seen.push(line),
            Err(_) => panic!("no FileAccessed event; saw {seen:#?}"),
        }
    };
    assert!(found.contains("\"origin\":\"local\""), "{found}");
    let _ = follower.kill();
    let _ = follower.wait();
}
