//! What the process boundary costs, side by side in one run: the local plugin
//! loaded into this process (as the host did before plugins ran apart) against
//! the same library served by a plugin process (`musicfs plugin-host`), on the
//! same files:
//!
//! - `stat`: one call, mean over many in a row;
//! - list: one listing of a folder of 1,000 files;
//! - first byte: from asking for a stream to its first piece;
//! - cold read: one file of 256 MiB streamed whole (the origin's page cache
//!   warm, so the boundary, not the disk, is what is measured), and four
//!   such streams at once.
//!
//! Then the same through the mount, the daemon's plugins in process
//! (`[plugins] in_process = true`) against apart, alternating over seven
//! rounds (medians and ranges), each round on
//! a fresh cache (`passthrough = false`, so warm reads come from the chunk
//! cache as for a user who is not root): a cold read of a 256 MiB file, a warm
//! read of it (a fresh mount on the cache the cold read filled), and the first
//! 4 KiB of an uncached 50 MiB file, open included.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench plugin_process`

use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs::plugins::process::{PluginProcess, ProcessOptions};
use musicfs_tests::bench_support::{first_byte, noise_file, read_speed};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::{local_plugin, local_settings, musicfs_binary};
use origin_api::host::load_plugin;
use origin_api::Origin;

const BIG: u64 = 256 << 20;
const STATS: u32 = 20_000;
const LISTS: u32 = 200;
const FIRSTS: u32 = 500;
const ROUNDS: usize = 5;
/// Rounds of the mount section, each side: one run is mostly noise there.
const MOUNT_ROUNDS: usize = 7;

async fn per_call<F: std::future::Future>(n: u32, mut call: impl FnMut() -> F) -> Duration {
    for _ in 0..n / 10 {
        call().await;
    }
    let started = Instant::now();
    for _ in 0..n {
        call().await;
    }
    started.elapsed() / n
}

/// Streams `path` whole; bytes per second.
async fn stream_whole(origin: &Arc<dyn Origin>, path: &str) -> f64 {
    let started = Instant::now();
    let mut stream = origin.read_stream(path, 0, BIG, None);
    let mut total = 0u64;
    while let Some(piece) = stream.next_piece().await {
        total += piece.unwrap().len() as u64;
    }
    assert_eq!(total, BIG);
    total as f64 / started.elapsed().as_secs_f64()
}

/// `streams` whole reads at once; bytes per second in all.
async fn streams_at_once(origin: &Arc<dyn Origin>, streams: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let origin = origin.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("big-{i}.bin");
            let mut stream = origin.read_stream(&path, 0, BIG, None);
            let mut total = 0u64;
            while let Some(piece) = stream.next_piece().await {
                total += piece.unwrap().len() as u64;
            }
            total
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn stream_first_byte(origin: &Arc<dyn Origin>) -> Duration {
    per_call(FIRSTS, || async {
        let mut stream = origin.read_stream("big-0.bin", 1 << 20, 1 << 20, None);
        stream.next_piece().await.unwrap().unwrap();
    })
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..1000 {
        std::fs::write(root.join("many").join(format!("{i:04}.flac")), b"x").unwrap();
    }
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| i.wrapping_mul(2_654_435_761).rotate_right(13) as u8)
        .collect();
    for i in 0..4 {
        let mut file = std::fs::File::create(root.join(format!("big-{i}.bin"))).unwrap();
        for _ in 0..BIG >> 20 {
            std::io::Write::write_all(&mut file, &chunk).unwrap();
        }
    }

    let in_process = load_plugin(&local_plugin()).unwrap();
    let inside: Arc<dyn Origin> = in_process
        .open(local_settings("bench", &root))
        .await
        .unwrap();
    let process = PluginProcess::start(
        &local_plugin(),
        ProcessOptions::new(Duration::from_secs(5)).with_executable(musicfs_binary()),
    )
    .await
    .unwrap();
    let apart: Arc<dyn Origin> = process.open(local_settings("bench", &root)).await.unwrap();
    // Both read every file once first: the page cache is warm for both.
    for i in 0..4 {
        stream_whole(&inside, &format!("big-{i}.bin")).await;
    }

    println!("the local plugin, loaded in process and run as a plugin process");
    println!("                         in process    plugin process   apart / in");
    let stat_in = per_call(STATS, || inside.stat("big-0.bin")).await;
    let stat_out = per_call(STATS, || apart.stat("big-0.bin")).await;
    println!(
        "  stat                  {:9.1} µs    {:9.1} µs      {:5.2}x",
        micros(stat_in),
        micros(stat_out),
        micros(stat_out) / micros(stat_in)
    );
    let list_in = per_call(LISTS, || inside.list("many", None, 5000)).await;
    let list_out = per_call(LISTS, || apart.list("many", None, 5000)).await;
    println!(
        "  list 1,000 files      {:9.1} µs    {:9.1} µs      {:5.2}x",
        micros(list_in),
        micros(list_out),
        micros(list_out) / micros(list_in)
    );
    let first_in = stream_first_byte(&inside).await;
    let first_out = stream_first_byte(&apart).await;
    println!(
        "  first byte            {:9.1} µs    {:9.1} µs      {:5.2}x",
        micros(first_in),
        micros(first_out),
        micros(first_out) / micros(first_in)
    );
    // Alternating rounds, so both see the same machine.
    let (mut cold_in, mut cold_out) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        cold_in.push(stream_whole(&inside, "big-0.bin").await);
        cold_out.push(stream_whole(&apart, "big-0.bin").await);
    }
    let (cold_in, cold_out) = (median(cold_in), median(cold_out));
    println!(
        "  read 256 MiB          {:9.0} MB/s  {:9.0} MB/s    {:5.2}x of in process",
        cold_in / 1e6,
        cold_out / 1e6,
        cold_out / cold_in
    );
    let (mut four_in, mut four_out) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        four_in.push(streams_at_once(&inside, 4).await);
        four_out.push(streams_at_once(&apart, 4).await);
    }
    let (four_in, four_out) = (median(four_in), median(four_out));
    println!(
        "  4 reads at once       {:9.0} MB/s  {:9.0} MB/s    {:5.2}x of in process",
        four_in / 1e6,
        four_out / 1e6,
        four_out / four_in
    );
    drop(apart);
    process.shutdown().await;
    let work = dir.path().to_owned();
    tokio::task::spawn_blocking(move || mount_section(&work))
        .await
        .unwrap();
}

/// A mount of `files` on `cache`, its plugins in process or not.
fn mount(
    work: &std::path::Path,
    n: usize,
    cache: &std::path::Path,
    files: &std::path::Path,
    in_process: bool,
) -> Mounted {
    let dir = work.join(format!("mount-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("musicfs.toml");
    std::fs::write(
        &config,
        format!("[cache]\npassthrough = false\n\n[plugins]\nin_process = {in_process}\n"),
    )
    .unwrap();
    let args = vec![
        "--origin".into(),
        format!("local:{}", files.display()),
        "--config".into(),
        config.display().to_string(),
    ];
    Mounted::start(&dir, cache, &args, Some(BIG_SHOWN))
}

const BIG_SHOWN: &str = "Unknown Artist/Unknown Album/big.flac";
const FIFTY_SHOWN: &str = "Unknown Artist/Unknown Album/fifty.flac";

fn mount_section(work: &std::path::Path) {
    let files = work.join("tracks");
    noise_file(&files.join("big.flac"), BIG, 1);
    noise_file(&files.join("fifty.flac"), 50 << 20, 2);
    // (cold MB/s, warm MB/s, first byte ms) per round, in process and apart.
    let mut figures: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut n = 0;
    for _ in 0..MOUNT_ROUNDS {
        for (side, in_process) in [(0, true), (1, false)] {
            n += 1;
            let cache = work.join(format!("cache-{n}"));
            let first = mount(work, n, &cache, &files, in_process);
            let ttfb = first_byte(&first.path(FIFTY_SHOWN), 25 << 20);
            let cold = read_speed(&first.path(BIG_SHOWN));
            first.stop();
            n += 1;
            let second = mount(work, n, &cache, &files, in_process);
            let warm = read_speed(&second.path(BIG_SHOWN));
            second.stop();
            figures[side].push((cold, warm, ttfb.as_secs_f64() * 1e3));
        }
    }

    let pick =
        |side: usize, f: fn(&(f64, f64, f64)) -> f64| median(figures[side].iter().map(f).collect());
    println!("\nthrough the mount (median of {MOUNT_ROUNDS} rounds, range; passthrough off)");
    println!("                         in process    plugin process   apart / in");
    for (name, f, unit) in [
        (
            "cold read 256 MiB",
            (|x: &(f64, f64, f64)| x.0) as fn(&(f64, f64, f64)) -> f64,
            "MB/s",
        ),
        ("warm read 256 MiB", |x: &(f64, f64, f64)| x.1, "MB/s"),
        ("first 4 KiB, cold", |x: &(f64, f64, f64)| x.2, "ms  "),
    ] {
        let (inside, apart) = (pick(0, f), pick(1, f));
        let range = |side: usize| {
            let v: Vec<f64> = figures[side].iter().map(f).collect();
            let (lo, hi) = (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(0.0, f64::max),
            );
            format!("{lo:.1}-{hi:.1}")
        };
        println!(
            "  {name:<20} {inside:>9.1} {unit}  {apart:>9.1} {unit}    {:5.2}x   (in {}, apart {})",
            apart / inside,
            range(0),
            range(1)
        );
    }
    restart_section(work, &files);
}

/// The daemon under the keeper `keeper`.
fn serving_pid(keeper: u32) -> Option<u32> {
    musicfs_tests::bench_support::process_tree(keeper)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("serve-mount"))
        })
}

fn restart_section(work: &std::path::Path, files: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let cache = work.join("cache-restart");
    let mount = mount(work, 1000, &cache, files, false);
    let keeper = mount.pid().unwrap();
    let track = mount.path(FIFTY_SHOWN);
    let touch = || {
        std::fs::metadata(&track).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&track)
            .unwrap();
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut [0u8; 4096], 0).unwrap();
    };
    touch();
    mount.wait_until(Duration::from_secs(60), |m| {
        m.log().contains("scan finished")
    });
    println!("\nreplacing the daemon under the mount (5 times each)");
    for (name, signal) in [
        ("SIGKILL to the daemon", libc::SIGKILL),
        ("SIGHUP to the keeper", libc::SIGHUP),
    ] {
        let mut waits = Vec::new();
        for _ in 0..5 {
            let old = serving_pid(keeper).unwrap();
            let started = Instant::now();
            let target = if signal == libc::SIGHUP { keeper } else { old };
            // SAFETY: kill(2) on a process of this bench.
            unsafe { libc::kill(target as i32, signal) };
            // Until a new daemon answers (after SIGHUP the old one may answer
            // a request or two on its way out).
            loop {
                touch();
                if serving_pid(keeper).is_some_and(|pid| pid != old) {
                    touch();
                    break;
                }
            }
            waits.push(started.elapsed().as_secs_f64() * 1e3);
            // The new daemon's start-up (its first scan) is over before the next.
            mount.wait_until(Duration::from_secs(60), |m| {
                m.log().matches("scan finished").count()
                    > waits.len() + usize::from(signal == libc::SIGHUP) * 5
            });
        }
        let lo = waits.iter().copied().fold(f64::MAX, f64::min);
        let hi = waits.iter().copied().fold(0.0, f64::max);
        println!(
            "  {name:<24} requests waited {:6.0} ms (median; {lo:.0}-{hi:.0})",
            median(waits.clone())
        );
    }
    mount.stop();
}
