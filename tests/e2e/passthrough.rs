//! FUSE passthrough on a real mount: a fully cached file gets a whole copy, and
//! its later opens, on this mount and after a remount, are read by the kernel
//! from that copy (one `FileAccessed` for the whole file at open, no reads).

use std::time::Duration;

use musicfs_tests::bench_support::noise_file;
use musicfs_tests::events::Events;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::xattr;

const SIZE: u64 = 6 << 20;
const SHOWN: &str = "Unknown Artist/Unknown Album/big.flac";

/// The whole copies in a cache folder, by length.
fn copies(cache: &std::path::Path) -> Vec<u64> {
    std::fs::read_dir(cache.join("whole"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".part"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .collect()
        })
        .unwrap_or_default()
}

fn read_as_one_open(mount: &Mounted, events: &Events) -> String {
    let bytes = std::fs::read(mount.path(SHOWN)).unwrap();
    assert_eq!(bytes.len() as u64, SIZE);
    let wanted = format!("\"path\":\"/{SHOWN}\"");
    let size = format!("\"size\":{SIZE}");
    events.wait_for(&[
        "\"event\":\"FileAccessed\"",
        &wanted,
        "\"offset\":0,",
        &size,
    ])
}

#[test]
fn a_fully_cached_file_is_read_by_the_kernel_from_its_whole_copy() {
    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    noise_file(&origin.join("big.flac"), SIZE, 7);
    let source = std::fs::read(origin.join("big.flac")).unwrap();
    let cache = work.path().join("cache");
    let args = ["--origin".into(), format!("local:{}", origin.display())];
    let mount = Mounted::start(&work.path().join("m1"), &cache, &args, Some(SHOWN));

    assert_eq!(
        std::fs::read(mount.path(SHOWN)).unwrap(),
        source,
        "cold read"
    );
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Passthrough needs CAP_SYS_ADMIN: no copy is made, reads stay the daemon's.
        assert_eq!(std::fs::read(mount.path(SHOWN)).unwrap(), source);
        mount.stop();
        assert!(copies(&cache).is_empty(), "a copy nobody can use");
        return;
    }
    // Closing the file the daemon served, whole in the cache now, starts the copy.
    mount.wait_until(Duration::from_secs(60), |_| copies(&cache) == [SIZE]);

    let events = Events::follow(&mount.mountpoint);
    let first = read_as_one_open(&mount, &events);
    assert!(first.contains("\"origin\":\"local\""), "{first}");
    // Two opens at once share the inode's backing file; each is an event.
    let whole = ["\"offset\":0,", &format!("\"size\":{SIZE}")];
    let before = events.count_with(&whole);
    let held = std::fs::File::open(mount.path(SHOWN)).unwrap();
    read_as_one_open(&mount, &events);
    events.wait_for_count(&whole, before + 2);
    drop(held);
    assert_eq!(
        xattr(&mount.path(SHOWN), "user.musicfs.cached").as_deref(),
        Some("yes")
    );
    drop(events);
    mount.stop();

    // A new mount: the kernel's page cache of the old one is gone, the copy is not.
    let again = Mounted::start(&work.path().join("m2"), &cache, &args, Some(SHOWN));
    let events = Events::follow(&again.mountpoint);
    read_as_one_open(&again, &events);
    let file = std::fs::File::open(again.path(SHOWN)).unwrap();
    let mut tail = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut tail, SIZE - 4096).unwrap();
    assert_eq!(tail, source[(SIZE - 4096) as usize..], "a read at the end");
    drop(file);
    again.stop();
}
