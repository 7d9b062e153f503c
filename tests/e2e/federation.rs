//! Two origins holding the same library: reads come from priority 1, move to
//! priority 2 at once when it fails, come back when it heals; everything failing
//! gives EIO quickly and an AllOriginsUnhealthy event; a hung origin blocks neither
//! other reads nor `ls`. Priority 1 is the test-only faulty plugin serving a folder,
//! with faults the test switches on and off; priority 2 is the local plugin.

use std::time::{Duration, Instant};

use musicfs_tests::audio_library::{self, copy_tree};
use musicfs_tests::events::Events;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::status_json;

/// The origin that served the last read of `shown` (its head may have come from
/// the cache of another replica; the end of the file had to be fetched).
fn served_by(events: &Events, shown: &str) -> String {
    let path = format!("\"path\":\"/{shown}\"");
    events.wait_for(&["FileAccessed", &path]);
    std::thread::sleep(Duration::from_millis(200));
    let line = events.last_with(&["FileAccessed", &path]).unwrap();
    let at = line.find("\"origin\":\"").unwrap() + 10;
    line[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn reads_fail_over_and_come_back() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    // Tracks larger than what the scan caches of their heads, so that reading them
    // needs an origin.
    for i in 0..6 {
        let tags = [
            ("title", format!("Noise {i}")),
            ("artist", "Static".into()),
            ("album", "Failover".into()),
            ("track", format!("{}", i + 1)),
        ];
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        audio_library::ffmpeg(
            &format!("anoisesrc=duration=8:seed={i}"),
            &tags,
            &[],
            &a.join(format!("n{i}.flac")),
        );
    }
    copy_tree(&a, &b);
    let fault = work.path().join("fault");
    let backup = format!(
        r#"
[[origins]]
id = "backup"
type = "local"
priority = 2
path = "{}"

[health]
check_interval_secs = 1
timeout_ms = 1000
[health.per_origin_thresholds]
faulty = 1

[retry]
delays_ms = [100, 200]
"#,
        b.display()
    );
    let args = musicfs_tests::faulty_folder_config(work.path(), "primary", &a, &fault, &backup);
    let shown = |i: usize| format!("Static/Failover/{:02} - Noise {i}.flac", i + 1);
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some(&shown(4)),
    );
    let events = Events::follow(&mount.mountpoint);
    let read = |i: usize| std::fs::read(mount.path(&shown(i)));
    let original = |i: usize| std::fs::read(a.join(format!("n{i}.flac"))).unwrap();

    // Healthy: priority 1 serves.
    assert_eq!(read(0).unwrap(), original(0));
    assert_eq!(served_by(&events, &shown(0)), "primary");

    // Priority 1 fails: the very next read is served by priority 2, without an error.
    std::fs::write(&fault, "fail").unwrap();
    let started = Instant::now();
    assert_eq!(read(1).unwrap(), original(1));
    let failover = started.elapsed();
    println!("failover read took {failover:?}");
    assert_eq!(served_by(&events, &shown(1)), "backup");
    events.wait_for(&[
        "OriginHealthChanged",
        "\"id\":\"primary\"",
        "\"to\":\"Unhealthy\"",
    ]);
    let status = status_json(&mount.mountpoint);
    assert!(
        status.contains("\"health\":\"unhealthy\"") && status.contains("injected failure"),
        "{status}"
    );

    // It heals: the periodic check notices, and priority 1 serves again.
    std::fs::remove_file(&fault).unwrap();
    events.wait_for(&[
        "OriginHealthChanged",
        "\"id\":\"primary\"",
        "\"to\":\"Healthy\"",
    ]);
    assert_eq!(read(2).unwrap(), original(2));
    assert_eq!(served_by(&events, &shown(2)), "primary");

    // A hung priority 1 costs at most the deadline, and blocks neither `ls` nor
    // cached reads meanwhile.
    std::fs::write(&fault, "hang").unwrap();
    let hung = {
        let path = mount.path(&shown(3));
        std::thread::spawn(move || {
            let started = Instant::now();
            (std::fs::read(path), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert!(std::fs::read_dir(&mount.mountpoint).unwrap().count() > 0);
    assert_eq!(read(0).unwrap(), original(0), "a cached file");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "ls and a cached read took {:?}",
        started.elapsed()
    );
    let (bytes, took) = hung.join().unwrap();
    assert_eq!(bytes.unwrap(), original(3));
    assert!(
        took < Duration::from_millis(2500),
        "the hung origin cost {took:?}"
    );
    assert_eq!(served_by(&events, &shown(3)), "backup");

    // Priority 1 dies in the middle of a read: the rest comes from priority 2.
    std::fs::remove_file(&fault).unwrap();
    events.wait_for(&[
        "OriginHealthChanged",
        "\"id\":\"primary\"",
        "\"to\":\"Healthy\"",
    ]);
    let mut file = std::fs::File::open(mount.path(&shown(5))).unwrap();
    let mut head = vec![0u8; 600 * 1024];
    std::io::Read::read_exact(&mut file, &mut head).unwrap();
    std::fs::write(&fault, "fail").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut rest).unwrap();
    println!(
        "the rest of a track after priority 1 died mid-read: {:?}",
        started.elapsed()
    );
    head.extend(rest);
    assert_eq!(head, original(5));
    assert_eq!(served_by(&events, &shown(5)), "backup");

    // Everything fails: EIO, fast, and an AllOriginsUnhealthy event.
    std::fs::write(&fault, "fail").unwrap();
    std::fs::rename(&b, work.path().join("b-gone")).unwrap();
    let started = Instant::now();
    let err = read(4).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(took < Duration::from_millis(1500), "EIO took {took:?}");
    events.wait_for(&["AllOriginsUnhealthy"]);
}
