//! The shared tier, side by side in one run: a Garage cluster (three nodes on
//! loopback, replication factor 3) as the tier and one `s3s-fs` server as the
//! origin, whose requests are counted from its log.
//!
//! - start: the first mount scans a tagged library (`BENCH_TRACKS`, 20,000 by
//!   default; 100,000 for the figure); a second mount with an empty
//!   cache shows it from the tier. Time to the whole tree shown, and the
//!   origin's GETs until then.
//! - N mounts playing the same album (N = 3): bytes the origin sent per byte
//!   played, without and with the tier.
//! - a 50 MB track read through the mount from the origin (cold), and by a
//!   fresh mount from the tier: MB/s side by side.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench tier`
//! (`BENCH_TRACKS=100000 BENCH_ONLY=start` for the start alone at scale).

use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::bench_support::{noise_file, read_speed, tagged_library, tagged_track_shown};
use musicfs_tests::garage_cluster::GarageCluster;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args, origins_config, S3Server};

const ALBUM_TRACKS: usize = 10;
const ALBUM_TRACK: u64 = 4 << 20;
const BIG: u64 = 50 << 20;
const PLAYERS: usize = 3;

fn tracks() -> usize {
    std::env::var("BENCH_TRACKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn tier_table(cluster: &GarageCluster, node: usize) -> toml::Table {
    cluster.tier_settings(node, "bench")
}

/// A mount in `work/name`, with the tier of `cluster` (node `node`) if given;
/// not waited for.
fn mount(work: &Path, name: &str, server: &S3Server, tier: Option<toml::Table>) -> Mounted {
    let home = work.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut config = origins_config(vec![server.origin("bucket", "lib")]);
    if let Some(tier) = tier {
        config.insert("tier".into(), tier.into());
    }
    let args = mount_args(&home, &config);
    Mounted::start_logging(&home, &home.join("cache"), &args, None, "warn")
}

/// Bytes the origin has sent in ranged GETs so far.
fn origin_bytes(server: &S3Server) -> u64 {
    server.served_ranges().iter().map(|(a, b)| b - a).sum()
}

/// Reads every track of the album through `mount`.
fn play_album(mount: &Mounted) {
    for n in 0..ALBUM_TRACKS {
        let shown = format!("Unknown Artist/Unknown Album/{n:02}.flac");
        mount.wait_until(Duration::from_secs(120), |m| m.path(&shown).exists());
        let bytes = std::fs::read(mount.path(&shown)).unwrap();
        assert_eq!(bytes.len() as u64, ALBUM_TRACK);
    }
}

fn main() {
    let tracks = tracks();
    let work =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
            .unwrap();
    let work = work.path();
    let cluster = GarageCluster::start(3);
    let server = S3Server::start_logging(Some(&work.join("requests.log")));
    tagged_library(&server.object_path("lib/library"), tracks);
    for n in 0..ALBUM_TRACKS {
        noise_file(
            &server.object_path(&format!("lib/album/{n:02}.flac")),
            ALBUM_TRACK,
            100 + n as u64,
        );
    }
    noise_file(&server.object_path("lib/big.flac"), BIG, 7);
    let last = tagged_track_shown(tracks - 1);

    println!(
        "the shared tier: Garage, 3 nodes, replication 3; origin s3s-fs; {tracks} tagged tracks\n"
    );

    // Start.
    let gets = server.gets();
    let started = Instant::now();
    let first = mount(work, "first", &server, Some(tier_table(&cluster, 0)));
    first.wait_until(Duration::from_secs(3600), |m| m.path(&last).exists());
    let scan = started.elapsed();
    let scan_gets = server.gets() - gets;
    first.wait_until(Duration::from_secs(600), |m| {
        m.tier_figure("indexes_written") >= 1
    });
    let gets = server.gets();
    let started = Instant::now();
    let second = mount(work, "second", &server, Some(tier_table(&cluster, 1)));
    second.wait_until(Duration::from_secs(3600), |m| m.path(&last).exists());
    let from_tier = started.elapsed();
    let tier_gets = server.gets() - gets;
    let index_bytes = second.tier_figure("bytes_read");
    println!("start, to the whole tree shown ({tracks} tracks)");
    println!(
        "  first mount, scanning the origin     {:>8.2} s   {scan_gets:>7} GETs of the origin",
        scan.as_secs_f64()
    );
    println!(
        "  second mount, index from the tier    {:>8.2} s   {tier_gets:>7} GETs of the origin, {:.1} MB from the tier   ({:.2}x the time)",
        from_tier.as_secs_f64(),
        index_bytes as f64 / 1e6,
        from_tier.as_secs_f64() / scan.as_secs_f64()
    );
    drop(second);
    // BENCH_ONLY=start stops here (at 100,000 tracks every mount's cache
    // holds the tags' chunks: 6 GB each).
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "start") {
        return;
    }

    // N mounts playing one album, without the tier: the origin's bytes while
    // each plays (once its scan has shown the library).
    let played = (PLAYERS as u64) * ALBUM_TRACK * ALBUM_TRACKS as u64;
    let mut alone = 0;
    for n in 0..PLAYERS {
        let mount = mount(work, &format!("alone{n}"), &server, None);
        mount.wait_until(Duration::from_secs(3600), |m| m.path(&last).exists());
        let before = origin_bytes(&server);
        play_album(&mount);
        alone += origin_bytes(&server) - before;
    }
    // ... and with it (the first mount plays first and publishes).
    let written = first.tier_figure("manifests_written");
    let before = origin_bytes(&server);
    play_album(&first);
    let mut shared = origin_bytes(&server) - before;
    first.wait_until(Duration::from_secs(600), |m| {
        m.tier_figure("manifests_written") >= written + ALBUM_TRACKS as u64
    });
    for n in 1..PLAYERS {
        let mount = mount(
            work,
            &format!("shared{n}"),
            &server,
            Some(tier_table(&cluster, n % 3)),
        );
        mount.wait_until(Duration::from_secs(3600), |m| m.path(&last).exists());
        let before = origin_bytes(&server);
        play_album(&mount);
        shared += origin_bytes(&server) - before;
    }
    println!(
        "\n{PLAYERS} mounts playing the same album ({} MB each)",
        (ALBUM_TRACK * ALBUM_TRACKS as u64) >> 20
    );
    println!(
        "  without the tier   {:.2} bytes from the origin per byte played",
        alone as f64 / played as f64
    );
    println!(
        "  with the tier      {:.2} bytes from the origin per byte played",
        shared as f64 / played as f64
    );

    // Throughput: the origin cold, then the tier.
    let written = first.tier_figure("manifests_written");
    let direct = read_speed(&first.path("Unknown Artist/Unknown Album/big.flac"));
    first.wait_until(Duration::from_secs(600), |m| {
        m.tier_figure("manifests_written") > written
    });
    let reader = mount(work, "reader", &server, Some(tier_table(&cluster, 2)));
    reader.wait_until(Duration::from_secs(600), |m| {
        m.path("Unknown Artist/Unknown Album/big.flac").exists()
    });
    let before = (reader.tier_figure("pack_reads"), server.gets());
    let tiered = read_speed(&reader.path("Unknown Artist/Unknown Album/big.flac"));
    let packs = reader.tier_figure("pack_reads") - before.0;
    println!("\nsequential read of a 50 MB track through the mount");
    println!("  from the origin (cold)       {direct:>8.0} MB/s");
    println!(
        "  from the tier (fresh mount)  {tiered:>8.0} MB/s   {:.2}x, {packs} ranged GETs of packs, {} GETs of the origin",
        tiered / direct,
        server.gets() - before.1
    );
}
