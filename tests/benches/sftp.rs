//! SFTP side by side, in one run, against one OpenSSH `sshd` on loopback and
//! the same files: MusicFS (SFTP plugin) against `sshfs` and `rclone mount`
//! with an SFTP remote. For each: the time to the first byte of an uncached
//! 50 MB file (in its middle, then at its start), the sequential throughput of
//! another uncached 50 MB file, and a re-read of it on the same mount.
//!
//! `SFTP_BENCH_MB` sets the files' size (default 50, the size the issue names).
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench sftp`
//! (needs sshd, sshfs and rclone: `apt-get install openssh-server sshfs rclone`).

use std::path::Path;
use std::time::Duration;

use musicfs_tests::bench_support::{
    first_byte, noise_file, peak_rss_mb, rclone_sftp_flags, read_speed, reset_peak_rss, PeerMount,
};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args_for, origins_config};
use musicfs_tests::ssh_server::SshServer;

struct Figures {
    tool: &'static str,
    ttfb_middle: Duration,
    ttfb_start: Duration,
    cold: f64,
    warm: f64,
    rss_peak: f64,
}

/// Measures one mounted tool (process `pid`) whose view of the library is
/// `root`, holding `ttfb.flac` and `stream.flac`.
fn measure(tool: &'static str, pid: u32, ttfb: &Path, stream: &Path, big: u64) -> Figures {
    reset_peak_rss(pid);
    let ttfb_middle = first_byte(ttfb, big / 2);
    let ttfb_start = first_byte(ttfb, 0);
    let cold = read_speed(stream);
    let warm = read_speed(stream);
    Figures {
        tool,
        ttfb_middle,
        ttfb_start,
        cold,
        warm,
        rss_peak: peak_rss_mb(pid),
    }
}

fn main() {
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let big: u64 = std::env::var("SFTP_BENCH_MB")
        .ok()
        .and_then(|mb| mb.parse().ok())
        .unwrap_or(50)
        << 20;
    let server = SshServer::start();
    noise_file(&server.library.join("big/ttfb.flac"), big, 5);
    noise_file(&server.library.join("big/stream.flac"), big, 6);

    let mut origin = server.origin("seedbox");
    origin.insert("poll_interval_secs".into(), 3600i64.into());
    let args = mount_args_for(
        &work.join("musicfs"),
        &origins_config(vec![origin]),
        "musicfs_sftp",
    );
    let mount = Mounted::start(
        &work.join("musicfs"),
        &work.join("musicfs-cache"),
        &args,
        Some("Unknown Artist/Unknown Album/stream.flac"),
    );
    let shown = |name: &str| mount.path(&format!("Unknown Artist/Unknown Album/{name}"));
    let musicfs = measure(
        "MusicFS",
        mount.pid().expect("the daemon runs"),
        &shown("ttfb.flac"),
        &shown("stream.flac"),
        big,
    );
    drop(mount);

    let sshfs = PeerMount::sshfs(
        "127.0.0.1",
        server.port,
        &server.library,
        &server.client_key,
        &server.known_hosts,
        work,
    );
    let sshfs_figures = measure(
        "sshfs",
        sshfs.pid(),
        &sshfs.mountpoint.join("big/ttfb.flac"),
        &sshfs.mountpoint.join("big/stream.flac"),
        big,
    );
    drop(sshfs);

    let flags = rclone_sftp_flags(&server);
    let remote = format!(":sftp:{}", server.library.display());
    let rclone = PeerMount::rclone_remote(&remote, &flags, work);
    let rclone_figures = measure(
        "rclone",
        rclone.pid(),
        &rclone.mountpoint.join("big/ttfb.flac"),
        &rclone.mountpoint.join("big/stream.flac"),
        big,
    );
    drop(rclone);

    println!("two {} MB files on one sshd on loopback\n", big >> 20);
    println!(
        "{:<8} {:>14} {:>14} {:>12} {:>12} {:>14}",
        "tool", "TTFB middle", "TTFB start", "cold MB/s", "warm MB/s", "peak RSS MB"
    );
    for f in [&musicfs, &sshfs_figures, &rclone_figures] {
        println!(
            "{:<8} {:>11.2} ms {:>11.2} ms {:>12.0} {:>12.0} {:>14.0}",
            f.tool,
            f.ttfb_middle.as_secs_f64() * 1e3,
            f.ttfb_start.as_secs_f64() * 1e3,
            f.cold,
            f.warm,
            f.rss_peak
        );
    }
    for peer in [&sshfs_figures, &rclone_figures] {
        println!(
            "\nMusicFS / {}: cold {:.2}x, warm {:.2}x, TTFB middle {:.2}x (below 1 is faster)",
            peer.tool,
            musicfs.cold / peer.cold,
            musicfs.warm / peer.warm,
            musicfs.ttfb_middle.as_secs_f64() / peer.ttfb_middle.as_secs_f64(),
        );
    }
    println!(
        "(TTFB start: MusicFS holds a file's head from its tag scan; the peers read it then.)"
    );
}
