//! The warm read path without FUSE: `ContentCache::read_cached` over a cached
//! 256 MB file, in 128 KiB and 1 MiB reads, against reading the chunk packs alone.

use std::sync::Arc;
use std::time::Instant;

use musicfs::cache::chunker::chunk;
use musicfs::cache::content_cache::ContentCache;
use musicfs::cache::manifest::FileVersion;
use musicfs::store::Store;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
    let size: usize = 256 << 20;
    let mut x = 7u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let version = FileVersion {
        origin: "o".into(),
        path: "f.flac".into(),
        size: size as u64,
        mtime_ns: 1,
        version: None,
    };
    {
        let cache = ContentCache::open(dir.path(), u64::MAX, store.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.seed(&version, 0, data.clone()));
    }
    let pieces = chunk(&data);
    println!("{} chunks", pieces.len());
    for read in [128 << 10, 1 << 20] {
        // A fresh cache each time: nothing hot in memory, as after a remount.
        let cache = ContentCache::open(dir.path(), u64::MAX, store.clone()).unwrap();
        let started = Instant::now();
        let mut offset = 0u64;
        while offset < size as u64 {
            let bytes = cache.read_cached(&version, offset, read).expect("cached");
            offset += bytes.len() as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "read_cached, {:>4} KiB reads: {:>6.0} MB/s",
            read >> 10,
            size as f64 / 1e6 / secs
        );
    }
    let packs: Vec<_> = std::fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    let started = Instant::now();
    for pack in &packs {
        std::hint::black_box(std::fs::read(pack).unwrap());
    }
    println!(
        "chunk packs read, no hashing: {:>6.0} MB/s",
        size as f64 / 1e6 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for p in &pieces {
        std::hint::black_box(blake3::hash(&data[p.offset..p.offset + p.len]));
    }
    println!(
        "BLAKE3 of the chunks alone: {:>6.0} MB/s",
        size as f64 / 1e6 / started.elapsed().as_secs_f64()
    );
}
