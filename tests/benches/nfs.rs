//! NFS side by side, in one run, against one nfs-ganesha export on loopback:
//! MusicFS (NFS plugin, NFSv3) against libnfs's `nfs-cat` reading the same
//! files. For each: the time to the first 4 KiB of an uncached 50 MB file, the
//! sequential throughput of another, and a re-read of it (MusicFS: the same
//! mount; nfs-cat: again, from the server's page cache). A third row reads a
//! file through the plugin's `.so` alone, with no cache and no FUSE: what the
//! NFS client costs, apart from the host.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench nfs`
//! (needs nfs-ganesha, rpcbind and libnfs-utils).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{first_byte, noise_file, read_speed};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::nfs_server::NfsServer;
use musicfs_tests::plugin_library;
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

/// A sequential read of `file` through the plugin loaded as a `.so`, no
/// cache and no FUSE: (time to its first 4 KiB, MB/s).
fn plugin_alone(server: &NfsServer, file: &str) -> (Duration, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let plugin = origin_api::host::load_plugin(&plugin_library("musicfs_nfs")).unwrap();
        let origin = plugin
            .open(origin_api::Settings::new("alone", server.settings(3)))
            .await
            .unwrap();
        let started = Instant::now();
        let mut stream = origin.read_stream(file, 0, BIG, None);
        let (mut total, mut first) = (0u64, None);
        while let Some(piece) = stream.next().await {
            total += piece.unwrap().len() as u64;
            if first.is_none() && total >= 4096 {
                first = Some(started.elapsed());
            }
        }
        assert_eq!(total, BIG, "the plugin read {total} bytes");
        let mbps = total as f64 / 1e6 / started.elapsed().as_secs_f64();
        (first.unwrap(), mbps)
    })
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let server = NfsServer::start();
    for (name, seed) in [
        ("ttfb", 5),
        ("stream", 6),
        ("cat-ttfb", 7),
        ("cat-stream", 8),
        ("alone", 9),
    ] {
        noise_file(&server.library.join(format!("big/{name}.flac")), BIG, seed);
    }

    let mut origin = server.origin("nas", 3);
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let args = mount_args_for(
        &work.join("musicfs"),
        &origins_config(vec![origin]),
        "musicfs_nfs",
    );
    let mount = Mounted::start(
        &work.join("musicfs"),
        &work.join("musicfs-cache"),
        &args,
        Some("Unknown Artist/Unknown Album/stream.flac"),
    );
    let shown = |name: &str| mount.path(&format!("Unknown Artist/Unknown Album/{name}.flac"));
    let ttfb = first_byte(&shown("ttfb"), BIG / 2);
    let cold = read_speed(&shown("stream"));
    let warm = read_speed(&shown("stream"));
    drop(mount);

    let (cat_ttfb, _) = nfs_cat(&server, "big/cat-ttfb.flac");
    let (_, cat_cold) = nfs_cat(&server, "big/cat-stream.flac");
    let (_, cat_warm) = nfs_cat(&server, "big/cat-stream.flac");
    let (alone_ttfb, alone_cold) = plugin_alone(&server, "big/alone.flac");

    println!("50 MB files on one nfs-ganesha export on loopback (NFSv3)\n");
    println!(
        "{:<9} {:>16} {:>12} {:>12}",
        "tool", "first 4 KiB", "cold MB/s", "again MB/s"
    );
    println!(
        "{:<9} {:>13.2} ms {:>12.0} {:>12.0}   (first 4 KiB: in the middle, on a mounted file)",
        "MusicFS",
        ttfb.as_secs_f64() * 1e3,
        cold,
        warm
    );
    println!(
        "{:<9} {:>13.2} ms {:>12.0} {:>12.0}   (first 4 KiB: at the start, mount included)",
        "nfs-cat",
        cat_ttfb.as_secs_f64() * 1e3,
        cat_cold,
        cat_warm
    );
    println!(
        "{:<9} {:>13.2} ms {:>12.0} {:>12}   (the plugin's .so alone, no cache, no FUSE)",
        "plugin",
        alone_ttfb.as_secs_f64() * 1e3,
        alone_cold,
        "-"
    );
    println!(
        "\nMusicFS / nfs-cat: cold {:.2}x, again {:.2}x; plugin alone / nfs-cat: cold {:.2}x",
        cold / cat_cold,
        warm / cat_warm,
        alone_cold / cat_cold
    );
}
