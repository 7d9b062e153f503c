//! The fault matrix: each way MusicFS could lose a track, serve wrong bytes, hang
//! a reader or stop, provoked for real against real mounts and built plugins. One
//! module per fault; each began as a test that failed before its fix.

mod changed_under_reader;
mod daemon_restart;
mod damaged_chunks;
mod damaged_index;
mod full_disk;
mod hung_origin;
mod killed_mid_work;
mod many_readers;
mod newer_mount;
mod plugin_crash;
mod stale_mount;
mod stopped_while_starting;
mod symlink_loops;
mod tag_outage;

use std::path::Path;
use std::time::Duration;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;

/// A tagged FLAC of ffmpeg's `source` at `out`.
fn tagged(source: &str, out: &Path, artist: &str, album: &str, number: u32, title: &str) {
    let number = number.to_string();
    let tags = [
        ("title", title),
        ("artist", artist),
        ("album", album),
        ("track", number.as_str()),
    ];
    ffmpeg(source, &tags, &[], out);
}

/// A one-second tagged FLAC at `out`.
pub(crate) fn track(out: &Path, artist: &str, album: &str, number: u32, title: &str) {
    tagged(
        "sine=frequency=440:duration=1",
        out,
        artist,
        album,
        number,
        title,
    );
}

/// A ten-second tagged FLAC of noise at `out` (about 1.7 MB: noise does not
/// compress), for reads that go past the chunks a scan caches.
pub(crate) fn track_of_noise(out: &Path, artist: &str, album: &str, number: u32, title: &str) {
    tagged("anoisesrc=duration=10", out, artist, album, number, title);
}

/// Waits until the daemon has logged `n` finished scans.
pub(crate) fn wait_for_scans(mount: &Mounted, n: usize) {
    mount.wait_until(Duration::from_secs(60), |m| {
        m.log().matches("scan finished").count() >= n
    });
}

/// One row of the fault matrix, printed for the record (`cargo test -- --nocapture
/// faults` shows them all) after the test has asserted it.
pub(crate) fn matrix_row(
    case: &str,
    count: usize,
    wrong_bytes: u64,
    hangs: usize,
    crashes: usize,
    lost: usize,
) {
    println!("fault matrix | {case} | {count} | {wrong_bytes} | {hangs} | {crashes} | {lost} |");
}

/// How many bytes of `got` differ from `want` at the same offset (bytes past
/// the end of `want` count as wrong).
pub(crate) fn wrong_bytes(got: &[u8], want: &[u8]) -> u64 {
    got.iter()
        .enumerate()
        .filter(|(i, b)| want.get(*i) != Some(b))
        .count() as u64
}

/// Every path below `dir`, for assertion messages.
pub(crate) fn tree(dir: &Path) -> Vec<String> {
    musicfs_tests::audio_library::files_below(dir)
}
