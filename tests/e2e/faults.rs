//! The fault matrix: each way MusicFS could lose a track, serve wrong bytes, hang
//! a reader or stop, provoked for real against real mounts and built plugins. One
//! module per fault; each began as a test that failed before its fix.

mod damaged_index;
mod full_disk;
mod hung_origin;
mod newer_mount;
mod stale_mount;
mod symlink_loops;
mod tag_outage;

use std::path::Path;
use std::time::Duration;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;

/// A one-second tagged FLAC at `out`.
pub(crate) fn track(out: &Path, artist: &str, album: &str, number: u32, title: &str) {
    let number = number.to_string();
    let tags = [
        ("title", title),
        ("artist", artist),
        ("album", album),
        ("track", number.as_str()),
    ];
    ffmpeg("sine=frequency=440:duration=1", &tags, &[], out);
}

/// Waits until the daemon has logged `n` finished scans.
pub(crate) fn wait_for_scans(mount: &Mounted, n: usize) {
    mount.wait_until(Duration::from_secs(60), |m| {
        m.log().matches("scan finished").count() >= n
    });
}

/// Every path below `dir`, for assertion messages.
pub(crate) fn tree(dir: &Path) -> Vec<String> {
    musicfs_tests::audio_library::files_below(dir)
}
