//! What a restart costs before the tree is shown, at scale, without FUSE or
//! plugins: building the tree from records (what a start without a usable
//! snapshot does), and loading the snapshot back (what a restart does), for a
//! generated library of `TREE_TRACKS` tracks (default 1,000,000) in albums of
//! ten, laid out like the mount bench's tagged library.

use std::time::Instant;

use musicfs::library::index::{FileRecord, FileRole};
use musicfs::library::inode_book::InodeBook;
use musicfs::library::layout::Layout;
use musicfs::library::tag_reader::Tags;
use musicfs::library::tree_build::build;
use musicfs::library::tree_snapshot;
use musicfs::store::Store;

fn record(i: usize) -> FileRecord {
    let (artist, album) = (i / 200, i / 10);
    FileRecord {
        origin: "local".into(),
        path: format!(
            "Artist {artist:05}/Album {album:06}/{:02} - Title {i:07}.flac",
            i % 10 + 1
        ),
        size: 9_000 + i as u64 % 977,
        mtime_ns: 1_700_000_000_000_000_000 + i as u64,
        version: Some(format!("{:x}", i * 7919)),
        role: FileRole::Audio,
        tags: Tags {
            title: Some(format!("Title {i:07}")),
            artist: Some(format!("Artist {artist:05}")),
            album: Some(format!("Album {album:06}")),
            track: Some(i as u32 % 10 + 1),
            ..Tags::default()
        },
        problem: None,
        pending_reads: 0,
        unseen: false,
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter("musicfs=debug")
        .init();
    let tracks: usize = std::env::var("TREE_TRACKS")
        .ok()
        .map(|v| v.parse().expect("TREE_TRACKS is a number"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("index.redb")).unwrap();
    let records: Vec<FileRecord> = (0..tracks).map(record).collect();
    let mut book = InodeBook::load(&store).unwrap();
    let started = Instant::now();
    let tree = build(
        &records,
        &|o: &str| (1, o.to_owned()),
        &Layout::default(),
        &mut book,
    );
    let built = started.elapsed();
    drop(records);
    let path = dir.path().join("tree.snapshot");
    let stamp = tree_snapshot::stamp(1, "");
    let started = Instant::now();
    tree_snapshot::save(&path, &tree, &stamp).unwrap();
    let saved = started.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    let nodes = tree.node_count();
    drop(tree);
    let loads: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let loaded = tree_snapshot::load(&path, &stamp).expect("the snapshot loads");
            assert_eq!(loaded.node_count(), nodes);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!("tree of {tracks} tracks ({nodes} nodes)");
    println!(
        "  built from records     {:>8.0} ms",
        built.as_secs_f64() * 1e3
    );
    println!(
        "  snapshot written       {:>8.0} ms  ({:.0} MB, {:.0} bytes a track)",
        saved.as_secs_f64() * 1e3,
        size as f64 / 1e6,
        size as f64 / tracks as f64
    );
    println!(
        "  snapshot loaded        {:>8.0} ms  (best of 3; {:.0}-{:.0})",
        loads.iter().cloned().fold(f64::MAX, f64::min),
        loads.iter().cloned().fold(f64::MAX, f64::min),
        loads.iter().cloned().fold(0.0, f64::max)
    );
}
