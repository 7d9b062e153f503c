//! The shared tier against a real distributed store: Garage, three nodes on
//! loopback with replication factor 3, and an S3 origin (`s3s-fs`) whose
//! requests are counted. Two mounts with caches of their own share the
//! tier: what one played the other reads with no request to the origin; a
//! retag moves only the changed chunks; a Garage node killed, then the whole
//! tier killed, in the middle of reads, loses nothing. A tier that is full
//! (the nodes' data disks small file systems), one behind an emulated WAN
//! link that then collapses, and one that never answers: every read is
//! exact, from the tier what it holds in time, the rest from the origin.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use musicfs_tests::bench_support::{noise_file, tagged_library, tagged_track_shown};
use musicfs_tests::garage_cluster::{self, GarageCluster};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::{mount_args, origins_config, S3Server};

const SHOWN: &str = "Unknown Artist/Unknown Album/noise.flac";
const SIZE: u64 = 24 << 20;

/// A `[tier]` table for node `node` of `cluster`.
fn tier_table(cluster: &GarageCluster, node: usize, key: &str, secret: &str) -> toml::Table {
    let mut tier = cluster.tier_settings(node, "household");
    tier.insert("access_key_id".into(), key.into());
    tier.insert("secret_access_key".into(), secret.into());
    tier.insert("deadline_ms".into(), 3000i64.into());
    tier
}

/// [`tier_table`] with the key that may read and write.
fn read_write(cluster: &GarageCluster, node: usize) -> toml::Table {
    tier_table(
        cluster,
        node,
        garage_cluster::ACCESS_KEY,
        garage_cluster::SECRET_KEY,
    )
}

/// A mount in `work/name` of the bucket's `lib` through `tier`.
fn mount(work: &Path, name: &str, server: &S3Server, tier: toml::Table) -> Mounted {
    mount_showing(work, name, server, tier, SHOWN)
}

/// [`mount`], ready once `ready` is shown.
fn mount_showing(
    work: &Path,
    name: &str,
    server: &S3Server,
    tier: toml::Table,
    ready: &str,
) -> Mounted {
    mount_origin(work, name, server.origin("bucket", "lib"), tier, ready)
}

/// A mount in `work/name` of `origin` through `tier`, ready once `ready`
/// is shown.
fn mount_origin(
    work: &Path,
    name: &str,
    origin: toml::Table,
    tier: toml::Table,
    ready: &str,
) -> Mounted {
    let home = work.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut config = origins_config(vec![origin]);
    config.insert("tier".into(), tier.into());
    let args = mount_args(&home, &config);
    Mounted::start_logging(
        &home,
        &home.join("cache"),
        &args,
        Some(ready),
        "info,musicfs::tier=debug",
    )
}

/// Waits until the mount's first scan has finished; its log then.
fn wait_scanned(mount: &Mounted) -> String {
    mount.wait_until(Duration::from_secs(60), |m| {
        m.plain_log().contains("scan finished")
    });
    mount.plain_log()
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Waits until `mount` has published a version more than `before` (its
/// packs, then its manifest).
fn wait_published(mount: &Mounted, before: u64) {
    mount.wait_until(Duration::from_secs(60), |m| {
        m.tier_figure("manifests_written") > before
    });
}

/// An origin holding one track, `lib/noise.flac` ([`SIZE`] bytes made from
/// `seed`), its requests logged in `work`: the server, the object's file,
/// its bytes.
fn one_track(work: &Path, seed: u64) -> (S3Server, std::path::PathBuf, Vec<u8>) {
    let server = S3Server::start_logging(Some(&work.join("requests.log")));
    let object = server.object_path("lib/noise.flac");
    noise_file(&object, SIZE, seed);
    let source = std::fs::read(&object).unwrap();
    (server, object, source)
}

/// The mtime of `path`.
fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[test]
fn what_one_mount_played_another_reads_from_the_tier_and_a_retag_moves_only_its_chunks() {
    let cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let (server, object, source) = one_track(work.path(), 11);

    // The first mount plays the track from the origin and publishes it.
    let tier = |node| read_write(&cluster, node);
    let first = mount(work.path(), "first", &server, tier(0));
    assert!(
        read_all(&first.path(SHOWN)) == source,
        "first mount reads the origin's bytes"
    );
    wait_published(&first, 0);
    assert!(
        !first.log().contains(garage_cluster::SECRET_KEY),
        "the tier's secret is never logged"
    );

    // The second, with an empty cache and another Garage node, reads it
    // from the tier: no GET of the origin once its scan is done.
    let second = mount(work.path(), "second", &server, tier(1));
    let (scanned, gets) = (server.served_ranges().len(), server.gets());
    assert!(
        read_all(&second.path(SHOWN)) == source,
        "second mount reads the same bytes"
    );
    let origin_reads = server.served_ranges()[scanned..].to_vec();
    assert_eq!(server.gets(), gets, "GETs of the origin: {origin_reads:?}");
    assert!(
        origin_reads.is_empty(),
        "the second mount read the origin: {origin_reads:?}"
    );
    let from_tier = second.tier_figure("bytes_read");
    assert!(
        (SIZE - (256 << 10)..=SIZE + (SIZE >> 6)).contains(&from_tier),
        "{from_tier} bytes from the tier for a {SIZE}-byte track (its head may be the scan's)"
    );

    // A retag at the origin: the first 4 KiB rewritten, same size.
    let mut retagged = source.clone();
    for (i, b) in retagged[..4096].iter_mut().enumerate() {
        *b = (i % 7) as u8;
    }
    let changed = |m: &Mounted| {
        std::fs::File::open(m.path(SHOWN))
            .and_then(|mut f| {
                let mut head = [0u8; 16];
                f.read_exact(&mut head)?;
                Ok(head == retagged[..16])
            })
            .unwrap_or(false)
    };
    // The first mount sees the change and plays the new version: it uploads
    // the changed chunks and the new manifest, placing the rest where the
    // tier holds the old version's, not the file again.
    let uploaded = replace_and_play(&first, &object, &retagged, Duration::ZERO);
    assert!(
        uploaded <= 2 * (256 << 10) + (64 << 10),
        "a retag uploaded {uploaded} bytes to the tier"
    );

    // The second mount moves only what changed: the manifest and the
    // chunks it lacks, not the file.
    second.wait_until(Duration::from_secs(60), changed);
    let before = second.tier_figure("bytes_read");
    let (scanned, gets) = (server.served_ranges().len(), server.gets());
    assert!(
        read_all(&second.path(SHOWN)) == retagged,
        "the new version, exactly"
    );
    let moved = second.tier_figure("bytes_read") - before;
    assert!(
        moved <= (64 << 10) + 2 * (256 << 10),
        "a retag moved {moved} bytes from the tier (its manifest and changed chunks)"
    );
    let origin_reads = server.served_ranges()[scanned..].to_vec();
    assert_eq!(server.gets(), gets, "GETs of the origin: {origin_reads:?}");
    assert!(
        origin_reads.is_empty(),
        "a retag read audio from the origin: {origin_reads:?}; status {}",
        second.status()
    );

    // The file written again, byte for byte, seconds later (S3 gives whole
    // seconds): a new version whose every chunk the tier holds. It still gets
    // its manifest (none was written before a review found it), and uploads
    // nothing else.
    let uploaded = replace_and_play(&first, &object, &retagged, Duration::from_secs(10));
    assert!(
        uploaded <= 64 << 10,
        "an unchanged file uploaded {uploaded} bytes"
    );
}

/// Replaces the track at `object` with `bytes`, written beside and renamed
/// over as an upload tool does, its mtime `ahead` of now; waits until
/// `mount` sees the new version, plays it whole (one stream, published
/// once) and has published it. The bytes it uploaded to the tier.
fn replace_and_play(mount: &Mounted, object: &Path, bytes: &[u8], ahead: Duration) -> u64 {
    let written = mount.tier_figure("manifests_written");
    let uploaded = mount.tier_figure("bytes_written");
    let old_mtime = mtime(&mount.path(SHOWN));
    let temp = object.with_extension("partial-upload");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&temp)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() + ahead))
        .unwrap();
    std::fs::rename(&temp, object).unwrap();
    mount.wait_until(Duration::from_secs(60), |m| {
        mtime(&m.path(SHOWN)) != old_mtime
    });
    assert!(read_all(&mount.path(SHOWN)) == bytes);
    wait_published(mount, written);
    mount.tier_figure("bytes_written") - uploaded
}

/// Reads `path` whole, calling `interrupt` once its first MiB has come (the
/// read-ahead then holds a window, not the file): every read must succeed.
fn read_interrupted(path: &Path, interrupt: impl FnOnce()) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    let mut out = vec![0u8; 1 << 20];
    file.read_exact(&mut out).unwrap();
    interrupt();
    file.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_garage_node_killed_then_the_whole_tier_killed_mid_read_loses_nothing() {
    let mut cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let (server, _, source) = one_track(work.path(), 12);
    let tiers: Vec<toml::Table> = (0..3).map(|node| read_write(&cluster, node)).collect();
    let first = mount(work.path(), "first", &server, tiers[0].clone());
    assert!(read_all(&first.path(SHOWN)) == source);
    wait_published(&first, 0);
    drop(first);

    // A reader through node 1 while node 2 dies: every byte, exactly (from
    // the tier, or from the origin while a call waits on the lost node).
    let second = mount(work.path(), "second", &server, tiers[1].clone());
    let through = read_interrupted(&second.path(SHOWN), || cluster.kill_node(2));
    assert!(through == source, "every byte, exactly, with a node gone");
    drop(second);
    // Two nodes of three still hold everything: once they know the third is
    // gone, a new mount reads it all from the tier.
    cluster.wait_degraded();
    let fourth = mount(work.path(), "fourth", &server, tiers[0].clone());
    let (scanned, gets) = (server.served_ranges().len(), server.gets());
    assert!(read_all(&fourth.path(SHOWN)) == source);
    let origin_reads = server.served_ranges()[scanned..].to_vec();
    assert_eq!(server.gets(), gets, "GETs of the origin: {origin_reads:?}");
    assert!(
        origin_reads.is_empty(),
        "with a node of three gone the origin was read: {origin_reads:?}; {}\n{}",
        fourth.status(),
        fourth.log()
    );
    drop(fourth);

    // The whole tier dies under a reader: the origin serves the rest.
    let third = mount(work.path(), "third", &server, tiers[0].clone());
    let (scanned, gets) = (server.served_ranges().len(), server.gets());
    let through = read_interrupted(&third.path(SHOWN), || cluster.kill_all());
    assert!(through == source, "every byte, exactly, with the tier gone");
    assert!(
        server.served_ranges().len() > scanned && server.gets() > gets,
        "the origin served what the tier no longer could"
    );
    assert!(third.tier_figure("failures") >= 1, "{}", third.log());
}

#[test]
fn a_mount_with_read_only_keys_reads_the_tier_and_writes_nothing() {
    let cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let (server, _, source) = one_track(work.path(), 13);
    let writer = mount(work.path(), "writer", &server, read_write(&cluster, 0));
    assert!(read_all(&writer.path(SHOWN)) == source);
    wait_published(&writer, 0);
    drop(writer);

    // A second track only the origin has: the reader fetches it there and
    // offers it; the tier refuses the write, and the reader stops trying.
    let other = server.object_path("lib/other.flac");
    noise_file(&other, 4 << 20, 14);
    let reader = mount(
        work.path(),
        "reader",
        &server,
        tier_table(
            &cluster,
            1,
            garage_cluster::READ_ONLY_KEY,
            garage_cluster::READ_ONLY_SECRET,
        ),
    );
    wait_scanned(&reader);
    let gets = server.gets();
    assert!(
        read_all(&reader.path(SHOWN)) == source,
        "read from the tier"
    );
    assert_eq!(
        server.gets(),
        gets,
        "no GET of the origin for what the tier holds"
    );
    let other_shown = "Unknown Artist/Unknown Album/other.flac";
    reader.wait_until(Duration::from_secs(30), |m| m.path(other_shown).exists());
    assert!(read_all(&reader.path(other_shown)) == std::fs::read(&other).unwrap());
    reader.wait_until(Duration::from_secs(30), |m| {
        m.status()["tier"]["publishes"] == serde_json::Value::Bool(false)
    });
    assert_eq!(reader.tier_figure("writes"), 0);
    let log = reader.plain_log();
    assert_eq!(
        log.matches("refuses this mount's writes").count(),
        1,
        "told once, then no more writes tried: {log}"
    );
    assert!(
        !reader.log().contains(garage_cluster::READ_ONLY_SECRET),
        "the secret is never logged"
    );
}

#[test]
fn a_new_mount_shows_the_library_from_the_tier_without_asking_its_origin_and_follows_it_while_away()
{
    const TRACKS: usize = 200;
    let cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let server = S3Server::start_logging(Some(&work.path().join("requests.log")));
    tagged_library(&server.object_path("lib"), TRACKS);
    let tier = |node| read_write(&cluster, node);
    let last = tagged_track_shown(TRACKS - 1);
    let first = mount_showing(work.path(), "first", &server, tier(0), &last);
    first.wait_until(Duration::from_secs(60), |m| {
        m.tier_figure("indexes_written") >= 1
    });

    // A laptop away from home: its origin (the same id) cannot be reached.
    // The library shows whole and tagged from the tier.
    let mut unreachable = server.origin("bucket", "lib");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    unreachable.insert("endpoint".into(), format!("http://127.0.0.1:{port}").into());
    let away = mount_origin(work.path(), "away", unreachable, tier(1), &last);
    for i in 0..TRACKS {
        assert!(
            away.path(&tagged_track_shown(i)).exists(),
            "{} missing",
            tagged_track_shown(i)
        );
    }
    assert_eq!(away.tier_figure("indexes_read"), 1);

    // At home a track is added and one removed; the first mount's watch
    // finds both and publishes its index again. The laptop, its origin out
    // of reach, follows: the added track shows, the removed one leaves.
    let added = "Unknown Artist/Unknown Album/added.flac";
    let removed = tagged_track_shown(0);
    noise_file(&server.object_path("lib/added.flac"), 1 << 20, 30);
    let gone = server
        .object_path("lib")
        .join(musicfs_tests::bench_support::tagged_track_source(0));
    std::fs::remove_file(&gone).unwrap();
    first.wait_until(Duration::from_secs(60), |m| {
        m.path(added).exists() && !m.path(&removed).exists()
    });
    away.wait_until(Duration::from_secs(120), |m| {
        m.path(added).exists() && !m.path(&removed).exists()
    });
    assert!(away.tier_figure("indexes_read") >= 2);
    assert!(away.path(&tagged_track_shown(1)).exists(), "the rest stays");
    drop(away);
    drop(first);

    // At home: a new mount shows it all, and its scan finds every scanned
    // file as the tier's index has it: it lists, and reads their tags not.
    let gets = server.gets();
    let home = mount_showing(work.path(), "home", &server, tier(2), &last);
    let shown = (1..TRACKS)
        .filter(|&i| home.path(&tagged_track_shown(i)).exists())
        .count();
    assert_eq!(shown, TRACKS - 1);
    assert!(home.path(added).exists() && !home.path(&removed).exists());
    let log = wait_scanned(&home);
    // No tag is read: not of the scanned tracks, nor of the one the watch
    // added (its record, from a HEAD, matches what a listing says of it).
    assert!(log.contains("scan finished files=200 tags_read=0"), "{log}");
    assert_eq!(server.gets(), gets, "the new mount read its origin");
    assert_eq!(home.tier_figure("indexes_read"), 1);
}

/// The sum of `tags_read` over every scan the mount logged.
fn tags_read(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.split("tags_read=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

#[test]
fn two_mounts_starting_together_scan_their_origin_once_and_a_dead_scanner_lets_go() {
    const TRACKS: usize = 300;
    let mut cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let server = S3Server::start_logging(Some(&work.path().join("requests.log")));
    tagged_library(&server.object_path("lib"), TRACKS);
    let tier = |cluster: &GarageCluster, node: usize| {
        let mut table = read_write(cluster, node);
        table.insert("lease_secs".into(), 10i64.into());
        table
    };
    let last = tagged_track_shown(TRACKS - 1);
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| mount_showing(work.path(), "one", &server, tier(&cluster, 0), &last));
        let two = s.spawn(|| mount_showing(work.path(), "two", &server, tier(&cluster, 1), &last));
        (one.join().unwrap(), two.join().unwrap())
    });
    for mount in [&one, &two] {
        mount.wait_until(Duration::from_secs(60), |m| {
            m.plain_log()
                .contains(&format!("files={TRACKS} tags_read=0"))
                || tags_read(&m.plain_log()) == TRACKS
        });
    }
    let (log_one, log_two) = (one.plain_log(), two.plain_log());
    assert_eq!(
        tags_read(&log_one) + tags_read(&log_two),
        TRACKS,
        "the tags were read by one mount only\n{log_one}\n{log_two}"
    );
    drop((one, two));

    // A mount that takes the lease and dies: the next one waits for its
    // lease to run out, then scans by itself.
    let fresh = GarageCluster::start(3);
    drop(std::mem::replace(&mut cluster, fresh));
    let dying = {
        let home = work.path().join("dying");
        std::fs::create_dir_all(&home).unwrap();
        let mut config = origins_config(vec![server.origin("bucket", "lib")]);
        config.insert("tier".into(), tier(&cluster, 0).into());
        let args = mount_args(&home, &config);
        Mounted::start_logging(&home, &home.join("cache"), &args, None, "info")
    };
    dying.wait_until(Duration::from_secs(30), |m| {
        m.plain_log().contains("scan lease taken")
    });
    let dying_log = dying.plain_log();
    let dead_mount = dying.mountpoint.clone();
    dying.kill();
    let next = mount_showing(work.path(), "next", &server, tier(&cluster, 1), &last);
    // Its first scan leaves the origin to the lease holder; the one that
    // counts finishes after it saw the holder stopped.
    let scanned_after_takeover = |log: &str| {
        log.split_once("stopped; scanning it")
            .is_some_and(|(_, after)| after.contains("scan finished"))
    };
    next.wait_until(Duration::from_secs(120), |m| {
        scanned_after_takeover(&m.plain_log())
    });
    let log = next.plain_log();
    assert!(
        log.contains("another mount is scanning") && scanned_after_takeover(&log),
        "{log}\nthe mount killed:\n{dying_log}"
    );
    // The killed mount's keeper left its FUSE mount dead: clear it.
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&dead_mount)
        .status();
    assert_eq!(tags_read(&log), TRACKS);
}

#[test]
fn the_tier_keeps_its_limit_and_a_mounts_pin_holds_against_the_sweep() {
    const TRACK: u64 = 12 << 20;
    let cluster = GarageCluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let server = S3Server::start_logging(Some(&work.path().join("requests.log")));
    for (n, name) in ["a", "b", "c"].into_iter().enumerate() {
        noise_file(
            &server.object_path(&format!("lib/{name}.flac")),
            TRACK,
            20 + n as u64,
        );
    }
    let shown = |name: &str| format!("Unknown Artist/Unknown Album/{name}.flac");
    let mut tier = read_write(&cluster, 0);
    // Room for one track and a bit: whatever order the sweep takes them
    // in, all it may take is `b` and `c`.
    tier.insert("size_limit_gb".into(), 0.015.into());
    tier.insert("grace_secs".into(), 0i64.into());
    tier.insert("sweep_every_secs".into(), 1i64.into());
    tier.insert("lease_secs".into(), 3i64.into());
    let first = mount_showing(work.path(), "first", &server, tier.clone(), &shown("c"));
    // `a` pinned: fetched whole, published, and named in the mount's session.
    let pinned = std::process::Command::new(musicfs_tests::musicfs_binary())
        .arg("pin")
        .arg(first.path(&shown("a")))
        .output()
        .unwrap();
    assert!(pinned.status.success(), "{pinned:?}");
    wait_published(&first, 0);
    for name in ["b", "c"] {
        let before = first.tier_figure("manifests_written");
        assert_eq!(read_all(&first.path(&shown(name))).len() as u64, TRACK);
        wait_published(&first, before);
    }
    // 38 MB of packs for a limit of 15: the sweep takes the least recently
    // used packs that are not pinned until under it.
    first.wait_until(Duration::from_secs(60), |m| {
        m.tier_figure("swept_bytes") >= 3 * TRACK - 15_000_000
    });
    let swept = first.tier_figure("swept_bytes");
    assert!(
        swept <= 2 * TRACK + (1 << 20),
        "swept {swept} bytes: a pinned pack went"
    );
    // The sweep deletes packs only; the tidy after it (grace 0) finds the
    // manifests that name a swept pack and deletes them.
    first.wait_until(Duration::from_secs(60), |m| {
        m.tier_figure("tidied_objects") >= 1
    });

    // A new mount: the pinned track comes from the tier, the others (swept,
    // whole or in part) from the origin.
    let second = mount_showing(work.path(), "second", &server, tier, &shown("c"));
    wait_scanned(&second);
    let gets = server.gets();
    assert!(
        read_all(&second.path(&shown("a")))
            == std::fs::read(server.object_path("lib/a.flac")).unwrap()
    );
    assert_eq!(
        server.gets(),
        gets,
        "the pinned track was swept: {}",
        first
            .plain_log()
            .lines()
            .chain(second.plain_log().lines())
            .filter(|l| l.contains("tier"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for name in ["b", "c"] {
        assert!(
            read_all(&second.path(&shown(name)))
                == std::fs::read(server.object_path(&format!("lib/{name}.flac"))).unwrap()
        );
    }
    assert!(server.gets() > gets, "nothing was swept");
}

#[test]
fn a_tier_that_accepts_and_never_answers_holds_no_reader() {
    // A tier that takes connections and says nothing: every call runs out
    // its deadline.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hung.incoming().flatten() {
            held.push(stream);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let (server, _, source) = one_track(work.path(), 15);
    let mut tier = toml::Table::new();
    tier.insert("endpoint".into(), format!("http://127.0.0.1:{port}").into());
    tier.insert("bucket".into(), "nowhere".into());
    tier.insert("access_key_id".into(), "GKnobody".into());
    tier.insert("secret_access_key".into(), "no-secret-at-all".into());
    tier.insert("deadline_ms".into(), 1000i64.into());
    let mount = mount(work.path(), "hung", &server, tier);
    // Every byte, exactly, from the origin: the hung tier costs a reader one
    // call's deadline at most, then is left alone.
    assert!(read_all(&mount.path(SHOWN)) == source);
    assert!(mount.tier_figure("failures") >= 1, "{}", mount.log());
    assert_eq!(mount.tier_figure("bytes_read"), 0);
}

#[test]
fn a_full_tier_costs_nothing_but_what_it_could_not_take() {
    // Each Garage node's data folder holds 12 MiB: a small track fits, a
    // 24 MiB one (three packs) does not.
    let cluster = GarageCluster::start_with_data_space(3, Some(12 << 20));
    let work = tempfile::tempdir().unwrap();
    let server = S3Server::start_logging(Some(&work.path().join("requests.log")));
    noise_file(&server.object_path("lib/small.flac"), 3 << 20, 21);
    noise_file(&server.object_path("lib/large.flac"), SIZE, 22);
    let source = |name: &str| std::fs::read(server.object_path(&format!("lib/{name}"))).unwrap();
    let shown = |name: &str| format!("Unknown Artist/Unknown Album/{name}");

    let first = mount_showing(
        work.path(),
        "first",
        &server,
        read_write(&cluster, 0),
        &shown("large.flac"),
    );
    assert!(read_all(&first.path(&shown("small.flac"))) == source("small.flac"));
    wait_published(&first, 0);
    // The large one does not fit: its writes fail, the reader never knows.
    assert!(read_all(&first.path(&shown("large.flac"))) == source("large.flac"));
    first.wait_until(Duration::from_secs(60), |m| m.tier_figure("failures") >= 1);
    assert!(
        first
            .plain_log()
            .contains("writes to the tier pause for 10s"),
        "a failed write pauses writing, and says so: {}",
        first.plain_log()
    );
    assert_eq!(
        first.tier_figure("manifests_written"),
        1,
        "no manifest of a version whose packs were not all written"
    );
    // The full tier still serves what it holds, and refuses nothing.
    assert!(read_all(&first.path(&shown("small.flac"))) == source("small.flac"));

    // A second mount reads the small track from the tier, the large one from
    // the origin, both exactly.
    let second = mount_showing(
        work.path(),
        "second",
        &server,
        read_write(&cluster, 1),
        &shown("large.flac"),
    );
    let gets = server.gets();
    assert!(read_all(&second.path(&shown("small.flac"))) == source("small.flac"));
    assert_eq!(server.gets(), gets, "the small track came from the tier");
    assert!(second.tier_figure("bytes_read") >= 3 << 20);
    assert!(read_all(&second.path(&shown("large.flac"))) == source("large.flac"));
    assert!(server.gets() > gets, "the large track came from its origin");
    assert_eq!(second.tier_figure("refused"), 0);
}

#[test]
fn a_tier_far_away_serves_what_it_holds_and_one_too_slow_sends_reads_to_the_origin() {
    use musicfs_tests::link::{Link, Profile};
    // The three nodes 50 ms and 100 Mbit/s away from every mount (their
    // traffic among themselves stays on their side); the origin is near.
    let link = Link::new(Profile::WAN);
    let cluster = GarageCluster::start_at(link.site(), 3, None);
    let work = tempfile::tempdir().unwrap();
    let (server, _, source) = one_track(work.path(), 31);
    let first = mount(work.path(), "first", &server, read_write(&cluster, 0));
    assert!(read_all(&first.path(SHOWN)) == source);
    wait_published(&first, 0);

    // A second mount reads the track from the far tier, whole and exact,
    // with no origin GET, in few requests (each pack GET a run of chunks).
    let second = mount(work.path(), "second", &server, read_write(&cluster, 1));
    let (gets, crossed) = (server.gets(), link.settled());
    assert!(read_all(&second.path(SHOWN)) == source);
    assert_eq!(server.gets(), gets, "the far tier served the track");
    let moved = link.settled() - crossed;
    assert!(
        (SIZE..SIZE + SIZE / 8).contains(&moved.to_clients.bytes),
        "{moved:?} crossed the link for a {SIZE}-byte track"
    );
    let pack_reads = second.tier_figure("pack_reads");
    assert!(
        pack_reads <= SIZE / (1 << 20) + 4,
        "{pack_reads} pack GETs for {SIZE} bytes"
    );
    assert_eq!(second.tier_figure("failures"), 0, "{}", second.status());

    // The link collapses to 1 Mbit/s: a run of chunks (1 MiB, 8 s) cannot
    // come within the tier's 3 s deadline. A third mount reads the track
    // exactly, from the origin, after one deadline.
    link.set_rate(1_000_000);
    let third = mount(work.path(), "third", &server, read_write(&cluster, 2));
    let gets = server.gets();
    assert!(read_all(&third.path(SHOWN)) == source);
    assert!(
        server.gets() > gets,
        "the origin served what the tier could not"
    );
    assert!(third.tier_figure("failures") >= 1, "{}", third.status());
    assert!(
        third.tier_figure("bytes_read") < SIZE / 2,
        "{} bytes came over the collapsed link",
        third.tier_figure("bytes_read")
    );
    drop((first, second, third));
    drop(cluster);
}
