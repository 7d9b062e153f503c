//! The library at scale (issue "Library at a million"): one mount of a
//! generated library of `BENCH_TRACKS` tagged tracks (default 100,000) on a
//! local origin, and what a change costs there.
//!
//! - the first scan: tracks a second, and the peak memory of the mount's
//!   processes (keeper, daemon, plugin processes) per track;
//! - at rest after it: memory per track;
//! - one album (20 tracks) added at the origin: the time until its last track
//!   shows in the mount (the local origin's watch sees it at once, so this is
//!   the host's change path), the daemon's CPU for it, and the growth of its
//!   memory meanwhile;
//! - a restart: time until `ls` of the root answers.
//!
//! Run: `cargo build --workspace --release && BENCH_TRACKS=100000 cargo bench -p musicfs-tests --bench library`

use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{
    add_tagged_track, memory_by_process, peak_rss_mb, process_tree, pss_mb, reset_peak_rss, rss_mb,
    tagged_library, tagged_track_shown,
};
use musicfs_tests::mounted::Mounted;

/// Tracks a second the kernel counts CPU time in (`/proc/PID/stat`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf cannot fail for this name.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is 0, utime 11, stime 12.
    (field(11) + field(12)) / ticks_per_second()
}

/// The daemon serving under the keeper `keeper`.
fn daemon_of(keeper: u32) -> u32 {
    process_tree(keeper)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("serve-mount"))
        })
        .expect("a daemon serves the mount")
}

/// How long the change path lets a burst settle (`changes::SETTLE`).
const SETTLE_MS: u64 = 150;

fn tracks() -> usize {
    std::env::var("BENCH_TRACKS")
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("BENCH_TRACKS={v}")))
        .unwrap_or(100_000)
}

fn mount(work: &Path, name: &str, cache: &Path, library: &Path) -> Mounted {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    // The change path says at debug how long each batch took.
    Mounted::start_logging(
        &dir,
        cache,
        &["--origin".into(), format!("local:{}", library.display())],
        None,
        "info,musicfs::changes=debug",
    )
}

/// The change batches the daemon logged: (from the first event's arrival
/// until shown, of which applying after the batch settled), in ms.
fn batches(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        let digits: String = line[at..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    // Without the terminal's colours.
    let mut plain = String::with_capacity(log.len());
    let mut escaped = false;
    for c in log.chars() {
        match (escaped, c) {
            (false, '\u{1b}') => escaped = true,
            (true, 'm') => escaped = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("change batch shown"))
        .filter_map(|l| Some((field(l, "shown_ms")?, field(l, "applied_ms")?)))
        .collect()
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let tracks = tracks();
    let library = work.join("library");
    let made = Instant::now();
    tagged_library(&library, tracks);
    println!(
        "a library of {tracks} tagged tracks ({:.0} s to make)",
        made.elapsed().as_secs_f64()
    );
    let cache = work.join("cache");

    let started = Instant::now();
    let first = mount(work, "m1", &cache, &library);
    let keeper = first.pid().unwrap();
    // A hang detector, not a speed bound.
    let limit = Duration::from_secs(120 + tracks as u64 / 1_000);
    first.wait_until(limit, |m| {
        m.path(&tagged_track_shown(tracks - 1)).exists() && m.log().contains("scan finished")
    });
    let scan = started.elapsed().as_secs_f64();
    let scan_peak = peak_rss_mb(keeper);
    // At rest: idle a while, so that what an allocator gives back late counts.
    std::thread::sleep(Duration::from_secs(5));
    let at_rest = rss_mb(keeper);
    let per_track = |mb: f64| mb * 1e6 / tracks as f64;
    println!(
        "  first scan                  {:>9.0} tracks/s  ({scan:.1} s)",
        tracks as f64 / scan
    );
    println!(
        "  peak memory, first scan     {:>9.0} B a track ({scan_peak:.0} MB, every process of the mount)",
        per_track(scan_peak)
    );
    let at_rest_pss = pss_mb(keeper);
    println!(
        "  at rest after it            {:>9.0} B a track ({at_rest:.0} MB resident; proportional: {:.0} B a track, {at_rest_pss:.0} MB)",
        per_track(at_rest),
        per_track(at_rest_pss),
    );
    for (command, rss, pss) in memory_by_process(keeper) {
        println!("      {command:<28} {rss:>6.0} MB resident, {pss:>6.0} MB proportional");
    }

    // One album added: 20 tracks, renamed into place as an upload tool does.
    let daemon = daemon_of(keeper);

    reset_peak_rss(keeper);
    let before_rss = rss_mb(keeper);
    let cpu_before = cpu_seconds(daemon);
    let added = Instant::now();
    let logged_before = batches(&first.log()).len();
    let first_new = tracks.next_multiple_of(20);
    for i in first_new..first_new + 20 {
        add_tagged_track(&library, i);
    }
    first.wait_until(Duration::from_secs(120), |m| {
        m.path(&tagged_track_shown(first_new + 19)).exists()
    });
    let shown = added.elapsed().as_secs_f64();
    // The batch is applied and the tree swapped before the track shows; the
    // CPU it took is counted once the daemon is idle again.
    std::thread::sleep(Duration::from_secs(2));
    let window = added.elapsed().as_secs_f64();
    let cpu = cpu_seconds(daemon) - cpu_before;
    // What the daemon spends idle in as long (health checks, timers), right
    // after, to take out of the album's figure.
    let idle_before = cpu_seconds(daemon);
    std::thread::sleep(Duration::from_secs_f64(window));
    let idle = cpu_seconds(daemon) - idle_before;
    let growth = peak_rss_mb(keeper) - before_rss;
    let album: Vec<(u64, u64)> = batches(&first.log())[logged_before..].to_vec();
    println!(
        "  one album added: shown after{:>8.0} ms  (written at the origin until the last track shows)",
        shown * 1e3
    );
    println!(
        "  after its events reached us {:>9} ms  (the slowest of {} batch(es): settling {} ms, then applying {} ms)",
        album.iter().map(|b| b.0).max().unwrap_or(0),
        album.len(),
        SETTLE_MS,
        album.iter().map(|b| b.1).max().unwrap_or(0),
    );
    println!(
        "  its CPU in the daemon       {:>9.0} ms  ({:.0} ms over {window:.1} s, less {:.0} ms the daemon spends idle in as long; 10 ms ticks)",
        (cpu - idle).max(0.0) * 1e3,
        cpu * 1e3,
        idle * 1e3,
    );
    println!("  memory growth meanwhile     {:>9.0} MB", growth);
    first.stop();

    let started = Instant::now();
    let second = mount(work, "m2", &cache, &library);
    let root = std::fs::read_dir(&second.mountpoint).unwrap().count();
    println!(
        "  restart to `ls` of the root {:>9.0} ms  ({root} entries)",
        started.elapsed().as_secs_f64() * 1e3
    );
    // At rest after the restart's own scan (nothing new: no tags read).
    second.wait_until(Duration::from_secs(120 + tracks as u64 / 1_000), |m| {
        m.log().contains("scan finished")
    });
    std::thread::sleep(Duration::from_secs(5));
    let restarted = second.pid().unwrap();
    println!(
        "  at rest after the restart   {:>9.0} B a track ({:.0} MB resident; proportional: {:.0} B a track)",
        per_track(rss_mb(restarted)),
        rss_mb(restarted),
        per_track(pss_mb(restarted)),
    );
    second.stop();
}
