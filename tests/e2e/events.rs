//! `musicfs events` follows a running mount: every read is a FileAccessed event.

use std::os::unix::fs::{FileExt, PermissionsExt};

use musicfs_tests::audio_library::{self, TRACKS};
use musicfs_tests::events::Events;
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

    let socket = musicfs::control::socket::find_socket(Some(&mount.mountpoint)).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600, "the control socket is owner-only");
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    let events = Events::follow(&mount.mountpoint);

    let file = std::fs::File::open(mount.path(TRACKS[1].shown_as)).unwrap();
    let mut buf = vec![0u8; 1000];
    file.read_at(&mut buf, 100).unwrap();

    let wanted = format!("\"path\":\"/{}\"", TRACKS[1].shown_as);
    let found = events.wait_for(&["\"event\":\"FileAccessed\"", &wanted]);
    assert!(found.contains("\"origin\":\"local\""), "{found}");
}
