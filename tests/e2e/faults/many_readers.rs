//! A thousand readers at once (a music server's scan, a household's players):
//! every byte right, no reader stuck, and `ls` and `musicfs status` answer
//! while they read.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_tests::mounted::Mounted;

use super::{matrix_row, track, wrong_bytes};

#[test]
fn a_thousand_concurrent_readers_get_the_right_bytes() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let files = 20;
    for i in 0..files {
        track(
            &source.join(format!("c{i:02}.flac")),
            "Crowd",
            "Thousand",
            i as u32 + 1,
            &format!("Voice {i}"),
        );
    }
    let shown = |i: usize| format!("Crowd/Thousand/{:02} - Voice {i}.flac", i + 1);
    let originals: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..files)
            .map(|i| std::fs::read(source.join(format!("c{i:02}.flac"))).unwrap())
            .collect(),
    );
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some(&shown(files - 1)),
    );

    let readers = 1000;
    let wrong = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(readers));
    let threads: Vec<_> = (0..readers)
        .map(|n| {
            let path = mount.path(&shown(n % files));
            let (originals, wrong, start) = (originals.clone(), wrong.clone(), start.clone());
            std::thread::spawn(move || {
                // All at once, not as fast as threads can be started.
                start.wait();
                let bytes = std::fs::read(path)?;
                wrong.fetch_add(
                    wrong_bytes(&bytes, &originals[n % files]),
                    Ordering::Relaxed,
                );
                Ok::<(), std::io::Error>(())
            })
        })
        .collect();

    // Meanwhile: listings and status, timed for the record.
    let watcher = {
        let (mountpoint, done) = (mount.mountpoint.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut slowest_ls, mut slowest_status, mut rounds) =
                (Duration::ZERO, Duration::ZERO, 0);
            while !done.load(Ordering::Relaxed) || rounds == 0 {
                let started = Instant::now();
                let entries = std::fs::read_dir(mountpoint.join("Crowd/Thousand"))
                    .unwrap()
                    .count();
                assert_eq!(entries, files);
                slowest_ls = slowest_ls.max(started.elapsed());
                let started = Instant::now();
                let status = Command::new(musicfs_tests::musicfs_binary())
                    .args(["status", "--json", "--mount"])
                    .arg(&mountpoint)
                    .output()
                    .unwrap();
                assert!(status.status.success());
                slowest_status = slowest_status.max(started.elapsed());
                rounds += 1;
            }
            (slowest_ls, slowest_status, rounds)
        })
    };
    let failed = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(Result::is_err)
        .count();
    done.store(true, Ordering::Relaxed);
    let (slowest_ls, slowest_status, rounds) = watcher.join().unwrap();
    println!(
        "{readers} readers: slowest ls {slowest_ls:?}, slowest status {slowest_status:?} over {rounds} rounds"
    );
    let wrong = wrong.load(Ordering::Relaxed);
    assert_eq!(failed, 0);
    assert_eq!(wrong, 0);
    assert!(mount.alive());
    matrix_row(
        "1,000 concurrent readers of 20 tracks",
        readers,
        wrong,
        0,
        0,
        0,
    );
}
