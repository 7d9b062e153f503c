//! The read path without FUSE. Warm: `CachedFile::read_cached` (what a read
//! session does) over a cached
//! 256 MB file, in 128 KiB and 1 MiB reads, against reading the chunk packs
//! alone. Cold: `CachedFile::read` of a 128 MB file from an origin held in memory
//! (1 MiB pieces, as a remote plugin hands them over), in 1 MiB reads with a
//! sequential reader's window: what the host costs per new byte, without the
//! network or FUSE, against cutting and naming the bytes (FastCDC, BLAKE3) alone.

use std::sync::Arc;
use std::time::Instant;

use musicfs::cache::chunker::chunk;
use musicfs::cache::content_cache::ContentCache;
use musicfs::cache::fill::{Purpose, MAX_WINDOW};
use musicfs::cache::manifest::FileVersion;
use musicfs::cache::source::Source;
use musicfs::store::Store;
use origin_api::ReadStream;

/// An origin holding one file in memory; each piece is a fresh copy, as a
/// plugin's read buffer is.
struct InMemory(Arc<Vec<u8>>);

impl Source for InMemory {
    fn read_stream<'a>(
        &'a self,
        _path: &'a str,
        offset: u64,
        len: u64,
        _expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        ReadStream::in_pieces(offset, len, move |at, want| {
            let data = self.0.clone();
            async move {
                let start = (at as usize).min(data.len());
                let end = (start + want as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
        })
    }
}

/// Reads `version` (not cached) through `cache` from `source` in 1 MiB reads
/// with the largest window, running ahead as the mount's sequential reader
/// does: (MB/s, cores kept busy).
fn cold_read(
    cache: &Arc<ContentCache>,
    version: &FileVersion,
    source: Arc<dyn Source>,
) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu = cpu_seconds();
    let started = Instant::now();
    runtime.block_on(async {
        // The version looked up once, as a read session does.
        let file = cache.file(version);
        let mut offset = 0u64;
        while offset < version.size {
            let bytes = file
                .read(Some(&source), offset, 1 << 20, MAX_WINDOW, Purpose::Audio)
                .await
                .expect("read from memory");
            offset += bytes.len() as u64;
            // As the mount's sequential reader does: the stream runs on ahead.
            if let Some(ahead) = file.stream_ahead(offset, offset + MAX_WINDOW as u64) {
                let source = source.clone();
                tokio::spawn(ahead.run(source));
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    (
        version.size as f64 / 1e6 / secs,
        (cpu_seconds() - cpu) / secs,
    )
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// The size of a file read cold.
const COLD: usize = 128 << 20;

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
    // `BENCH_ROWS=cold` runs the cold rows only (for a profile of them).
    let warm_rows = std::env::var("BENCH_ROWS").map_or(true, |rows| rows != "cold");
    if warm_rows {
        let cache = ContentCache::open(dir.path(), u64::MAX, store.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.seed(&version, 0, data.clone()));
    }
    let pieces = chunk(&data);
    println!("{} chunks", pieces.len());
    let data = Arc::new(data);
    for round in 0..3 {
        // A new file each time (another path, so another version): every byte is new.
        let cold = FileVersion {
            path: format!("cold-{round}.flac"),
            size: COLD as u64,
            ..version.clone()
        };
        // Nothing left to write back: past a few hundred MB of dirty pages
        // the kernel holds writers to the disk's pace, which is not the host's.
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let cold_dir = tempfile::tempdir().unwrap();
        let cold_store = Arc::new(Store::open(&cold_dir.path().join("index.redb")).unwrap());
        let cache = Arc::new(ContentCache::open(cold_dir.path(), u64::MAX, cold_store).unwrap());
        let (mbps, cores) = cold_read(&cache, &cold, Arc::new(InMemory(data.clone())));
        let started = Instant::now();
        std::hint::black_box(chunk(&data[..COLD]));
        let alone = COLD as f64 / 1e6 / started.elapsed().as_secs_f64();
        println!(
            "read, cold from memory, 1 MiB reads: {mbps:>6.0} MB/s = {:.2}x cutting and naming alone ({alone:.0} MB/s), {cores:.2} cores busy",
            mbps / alone
        );
    }
    if !warm_rows {
        return;
    }
    for read in [128 << 10, 1 << 20] {
        // A fresh cache each time: nothing hot in memory, as after a remount.
        let cache = Arc::new(ContentCache::open(dir.path(), u64::MAX, store.clone()).unwrap());
        // As a read session does: the version looked up once, at open.
        let file = cache.file(&version);
        let started = Instant::now();
        let mut offset = 0u64;
        while offset < size as u64 {
            let bytes = file.read_cached(offset, read).expect("cached");
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
