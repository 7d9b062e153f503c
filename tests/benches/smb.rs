//! SMB side by side, in one run, against one Samba share on loopback (signing
//! mandatory): MusicFS (SMB plugin) against `smbclient … get FILE /dev/null`
//! and `rclone mount` of an SMB remote, reading the same kind of files. For
//! each: the time to the first 4 KiB in the middle of an uncached 50 MB file
//! (smbclient: none, it reads whole files), the sequential throughput of
//! another, and a re-read of it, over `SMB_BENCH_ROUNDS` rounds (default 3),
//! a fresh file for each measurement. `BENCH_READ_AHEAD_KB` sets MusicFS's
//! `[cache] read_ahead_kb` (the default 1024 was chosen with it: 4096 made
//! these cold reads slower).
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench smb`
//! (needs samba, smbclient and rclone).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{
    first_byte, noise_file, plugin_alone, read_ahead_from_env, read_speed, spread, PeerMount,
};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args_for, origins_config};
use musicfs_tests::smb_server::{SmbServer, PASSWORD, SHARE, USER};

const BIG: u64 = 50 << 20;

/// `smbclient` getting `file` into /dev/null: MB/s, sign-in included.
fn smbclient(server: &SmbServer, file: &str) -> f64 {
    let started = Instant::now();
    let out = Command::new("smbclient")
        .arg(format!("//127.0.0.1/{SHARE}"))
        .args(["-p", &server.port.to_string()])
        .args(["-U", &format!("{USER}%{PASSWORD}")])
        .args(["-c", &format!("get {file} /dev/null")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("smbclient runs (apt-get install smbclient)");
    assert!(
        out.status.success(),
        "smbclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    BIG as f64 / 1e6 / started.elapsed().as_secs_f64()
}

fn settle_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (first 4 KiB in the middle, cold MB/s, again MB/s) of the two files of
/// one round, under `root`.
fn measure(root: &Path, ttfb: &str, stream: &str) -> (f64, f64, f64) {
    settle_disk();
    let first = millis(first_byte(&root.join(ttfb), BIG / 2));
    settle_disk();
    let cold = read_speed(&root.join(stream));
    let again = read_speed(&root.join(stream));
    (first, cold, again)
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let rounds: u64 = std::env::var("SMB_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let server = SmbServer::start();
    let tools = ["musicfs", "smbclient", "rclone", "alone"];
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

    let mut origin = server.origin("nas");
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let mut config = origins_config(vec![origin]);
    read_ahead_from_env(&mut config);
    let args = mount_args_for(&work.join("musicfs"), &config, "musicfs_smb");
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
    let obscured = Command::new("rclone")
        .args(["obscure", PASSWORD])
        .output()
        .expect("rclone runs (apt-get install rclone)");
    let flags: Vec<String> = [
        "--smb-host",
        "127.0.0.1",
        "--smb-port",
        &server.port.to_string(),
        "--smb-user",
        USER,
        "--smb-pass",
        String::from_utf8_lossy(&obscured.stdout).trim(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rclone = PeerMount::rclone_remote(&format!(":smb:{SHARE}"), &flags, work);

    let shown = mount.path("Unknown Artist/Unknown Album");
    let mut figures: [Vec<f64>; 9] = Default::default();
    let [ttfb, cold, again, client_cold, rc_ttfb, rc_cold, rc_again, alone_ttfb, alone_cold] =
        &mut figures;
    // Rounds interleave the tools, so that a slow moment of the machine
    // falls on all of them.
    for round in 0..rounds {
        let (f, c, a) = measure(
            &shown,
            &format!("musicfs-ttfb-{round}.flac"),
            &format!("musicfs-stream-{round}.flac"),
        );
        ttfb.push(f);
        cold.push(c);
        again.push(a);
        settle_disk();
        client_cold.push(smbclient(
            &server,
            &format!("big/smbclient-stream-{round}.flac"),
        ));
        let (f, c, a) = measure(
            &rclone.mountpoint.join("big"),
            &format!("rclone-ttfb-{round}.flac"),
            &format!("rclone-stream-{round}.flac"),
        );
        rc_ttfb.push(f);
        rc_cold.push(c);
        rc_again.push(a);
        settle_disk();
        let file = format!("big/alone-stream-{round}.flac");
        let (first, mbps) = plugin_alone("musicfs_smb", server.settings(), &file, BIG);
        alone_ttfb.push(millis(first));
        alone_cold.push(mbps);
    }
    drop(rclone);
    drop(mount);

    println!("50 MB files on one Samba share on loopback (signing on), {rounds} rounds: median (range)\n");
    println!(
        "{:<10} {:>24} {:>24} {:>24}",
        "tool", "first 4 KiB (middle)", "cold", "again"
    );
    let row = |tool: &str, t: Option<&[f64]>, c: &[f64], a: Option<&[f64]>| {
        let t = t.map_or("-".to_owned(), |t| spread(t, "ms").1);
        let a = a.map_or("-".to_owned(), |a| spread(a, "MB/s").1);
        println!("{tool:<10} {t:>24} {:>24} {a:>24}", spread(c, "MB/s").1);
    };
    row("MusicFS", Some(ttfb), cold, Some(again));
    row("smbclient", None, client_cold, None);
    row("rclone", Some(rc_ttfb), rc_cold, Some(rc_again));
    row("plugin", Some(alone_ttfb), alone_cold, None);
    let m = |v: &[f64]| spread(v, "").0;
    println!(
        "\nmedians, MusicFS / smbclient: cold {:.2}x; MusicFS / rclone: cold {:.2}x, again {:.2}x, first 4 KiB {:.2}x (below 1 is faster)",
        m(cold) / m(client_cold),
        m(cold) / m(rc_cold),
        m(again) / m(rc_again),
        m(ttfb) / m(rc_ttfb),
    );
    println!(
        "plugin: the .so alone, no cache, no FUSE (first 4 KiB at the start, sign-in included), {:.2}x smbclient",
        m(alone_cold) / m(client_cold)
    );
    println!("(smbclient signs in for each file; rclone and MusicFS are mounted once.)");
}
