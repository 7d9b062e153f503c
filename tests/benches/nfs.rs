//! NFS side by side, in one run, against one nfs-ganesha export on loopback:
//! MusicFS (NFS plugin, NFSv3) against libnfs's `nfs-cat` reading the same
//! kind of files. For each: the time to the first 4 KiB of an uncached 50 MB
//! file, the sequential throughput of another, and a re-read of it (MusicFS:
//! the same mount; nfs-cat: again, from the server's page cache), over
//! `NFS_BENCH_ROUNDS` rounds (default 5; a 50 MB read takes a tenth of a
//! second here, so one round is mostly noise). A third row reads a
//! file through the plugin's `.so` alone, with no cache and no FUSE: what the
//! NFS client costs, apart from the host. `BENCH_READ_AHEAD_KB` sets MusicFS's
//! `[cache] read_ahead_kb`; `BENCH_PERF=FILE` records a whole-system profile
//! of MusicFS's first cold read there.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench nfs`
//! (needs nfs-ganesha, rpcbind and libnfs-utils).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{
    first_byte, noise_file, plugin_alone, profiled, read_ahead_from_env, read_speed, spread,
};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::nfs_server::NfsServer;
use musicfs_tests::s3_server::{mount_args_for, origins_config};

const BIG: u64 = 50 << 20;

/// `nfs-cat` of `file` on the export: (time to its first 4 KiB, MB/s).
fn nfs_cat(server: &NfsServer, file: &str) -> (Duration, f64) {
    let url = format!(
        "nfs://127.0.0.1{}/{file}?nfsport={}&mountport={}&version=3",
        server.library.display(),
        server.port,
        server.mount_port
    );
    let started = Instant::now();
    let mut child = Command::new("nfs-cat")
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("nfs-cat runs (apt-get install libnfs-utils)");
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut first = None;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        if first.is_none() && total >= 4096 {
            first = Some(started.elapsed());
        }
    }
    assert!(child.wait().unwrap().success(), "nfs-cat {url} failed");
    assert_eq!(total, BIG, "nfs-cat read {total} bytes");
    let mbps = total as f64 / 1e6 / started.elapsed().as_secs_f64();
    (first.unwrap(), mbps)
}

/// Writes back every dirty page, so that no measurement pays for earlier
/// writes.
fn settle_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let rounds: u64 = std::env::var("NFS_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let server = NfsServer::start();
    // A file per measurement, so that each cold read is cold everywhere but
    // in the server's page cache (as for both tools).
    let tools = ["musicfs", "cat", "alone"];
    for round in 0..rounds {
        for (t, tool) in tools.iter().enumerate() {
            for kind in ["ttfb", "stream"] {
                let seed = round * 8 + t as u64 * 2 + (kind == "stream") as u64;
                let file = server
                    .library
                    .join(format!("big/{tool}-{kind}-{round}.flac"));
                noise_file(&file, BIG, seed);
            }
        }
    }

    let mut origin = server.origin("nas", 3);
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let mut config = origins_config(vec![origin]);
    read_ahead_from_env(&mut config);
    let args = mount_args_for(&work.join("musicfs"), &config, "musicfs_nfs");
    let last = format!(
        "Unknown Artist/Unknown Album/musicfs-stream-{}.flac",
        rounds - 1
    );
    let mount = Mounted::start(
        &work.join("musicfs"),
        &work.join("musicfs-cache"),
        &args,
        Some(&last),
    );
    let shown = |name: String| mount.path(&format!("Unknown Artist/Unknown Album/{name}.flac"));
    let mut figures: [Vec<f64>; 8] = Default::default();
    let [ttfb, cold, warm, cat_ttfb, cat_cold, cat_warm, alone_ttfb, alone_cold] = &mut figures;
    // Rounds interleave the tools, so that a slow moment of the machine
    // falls on all of them; each measurement starts with nothing waiting to
    // be written back (the files just made, the other tools' caches).
    for round in 0..rounds {
        settle_disk();
        ttfb.push(millis(first_byte(
            &shown(format!("musicfs-ttfb-{round}")),
            BIG / 2,
        )));
        settle_disk();
        let stream = shown(format!("musicfs-stream-{round}"));
        cold.push(profiled(round == 0, || read_speed(&stream)));
        warm.push(read_speed(&stream));

        settle_disk();
        cat_ttfb.push(millis(
            nfs_cat(&server, &format!("big/cat-ttfb-{round}.flac")).0,
        ));
        settle_disk();
        let stream = format!("big/cat-stream-{round}.flac");
        cat_cold.push(nfs_cat(&server, &stream).1);
        cat_warm.push(nfs_cat(&server, &stream).1);

        settle_disk();
        alone_ttfb.push(millis(
            plugin_alone(
                "musicfs_nfs",
                server.settings(3),
                &format!("big/alone-ttfb-{round}.flac"),
                BIG,
            )
            .0,
        ));
        settle_disk();
        alone_cold.push(
            plugin_alone(
                "musicfs_nfs",
                server.settings(3),
                &format!("big/alone-stream-{round}.flac"),
                BIG,
            )
            .1,
        );
    }
    drop(mount);

    println!(
        "50 MB files on one nfs-ganesha export on loopback (NFSv3), {rounds} rounds: median (range)\n"
    );
    println!(
        "{:<9} {:>22} {:>22} {:>22}",
        "tool", "first 4 KiB", "cold", "again"
    );
    let row = |tool: &str, t: &[f64], c: &[f64], w: Option<&[f64]>, note: &str| {
        let again = w.map_or("-".to_owned(), |w| spread(w, "MB/s").1);
        println!(
            "{tool:<9} {:>22} {:>22} {:>22}   ({note})",
            spread(t, "ms").1,
            spread(c, "MB/s").1,
            again
        );
    };
    row(
        "MusicFS",
        ttfb,
        cold,
        Some(warm),
        "first 4 KiB: in the middle, on a mounted file",
    );
    row(
        "nfs-cat",
        cat_ttfb,
        cat_cold,
        Some(cat_warm),
        "first 4 KiB: at the start, mount included",
    );
    row(
        "plugin",
        alone_ttfb,
        alone_cold,
        None,
        "the plugin's .so alone, no cache, no FUSE; mount included",
    );
    let median = |f: &[f64]| spread(f, "").0;
    println!(
        "\nmedians, MusicFS / nfs-cat: cold {:.2}x, again {:.2}x; plugin alone / nfs-cat: cold {:.2}x",
        median(cold) / median(cat_cold),
        median(warm) / median(cat_warm),
        median(alone_cold) / median(cat_cold)
    );
}
