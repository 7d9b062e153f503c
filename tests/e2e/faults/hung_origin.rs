//! An origin that hangs while it still looks usable (issue 9, case 5). Before the
//! fix each timed-out attempt was retried after the next delay, every one waiting
//! for the call deadline again: 20.6 s for one read with `timeout_ms = 5000`.
//! Now a read has one deadline, twice `timeout_ms`, failover and retries included.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;

use super::wait_for_scans;

#[test]
fn a_hung_origin_holds_a_read_no_longer_than_its_deadline() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let tags = [("title", "Stuck"), ("artist", "Hang"), ("album", "Wait")];
    // Long enough that its end is not among the tag chunks the scan caches.
    ffmpeg(
        "anoisesrc=duration=8",
        &tags,
        &[],
        &source.join("stuck.flac"),
    );
    let fault = work.path().join("fault");
    // The faulty plugin is "remote": three failures before unhealthy, so the hung
    // origin stays usable through a read's retries.
    let health = "[health]\ncheck_interval_secs = 3600\ntimeout_ms = 2000\n";
    let retry = "[retry]\ndelays_ms = [100, 500, 2000]\n";
    let args = musicfs_tests::faulty_folder_config(
        work.path(),
        "hung",
        &source,
        &fault,
        &format!("{health}{retry}"),
    );
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some("Hang/Wait/Stuck.flac"),
    );
    wait_for_scans(&mount, 1);

    std::fs::write(&fault, "hang-reads").unwrap();
    let mut file = std::fs::File::open(mount.path("Hang/Wait/Stuck.flac")).unwrap();
    let size = file.metadata().unwrap().len();
    file.seek(SeekFrom::Start(size / 2)).unwrap();
    let started = Instant::now();
    let err = file.read(&mut [0u8; 4096]).unwrap_err();
    let took = started.elapsed();
    println!("a read of a hung origin failed after {took:?}");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The read's deadline is 4 s; before the fix this read took 4 attempts of 2 s
    // and 2.6 s of delays (10.6 s). The bound leaves the deadline as much again
    // for a slow machine.
    assert!(took < Duration::from_secs(8), "the read took {took:?}");
}
