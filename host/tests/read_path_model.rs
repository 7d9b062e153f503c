//! The read path against a reference model: random reads, seeks, read-aheads
//! and concurrent readers of a file, an origin whose streams fail now and then
//! and may find the file rewritten, all through the real content cache with a
//! fake origin behind its `Source` trait. Streams keep running in the
//! background between operations, as in the mount. Whatever happens: a read
//! returns the bytes of the version it asked for or an error, never other
//! bytes; no byte is fetched while the cache holds it; and a stream never holds
//! more than its bound (the batches it is storing and one arriving) of bytes that are not yet stored.

use std::sync::{Arc, Mutex};

use musicfs::cache::content_cache::ContentCache;
use musicfs::cache::fill::ingest::{CHUNK_BATCH, STORING_AT_ONCE};
use musicfs::cache::fill::Purpose;
use musicfs::cache::manifest::FileVersion;
use musicfs::cache::source::Source;
use musicfs::store::Store;
use origin_api::{ErrorKind, OriginError, OriginResult, ReadStream};
use proptest::prelude::*;

/// The largest piece the fake hands over at once.
const LARGEST_PIECE: usize = 1 << 20;

/// The file as the fake origin holds it now.
struct Current {
    bytes: Vec<u8>,
    version: String,
    /// Pieces left that fail (an outage).
    failing: u32,
    /// What broke a rule, found while serving.
    broken: Vec<String>,
}

struct FakeOrigin {
    now: Mutex<Current>,
    cache: Arc<ContentCache>,
    size: u64,
}

fn file_version(size: u64, token: &str) -> FileVersion {
    FileVersion {
        origin: "fake".into(),
        path: "f.flac".into(),
        size,
        mtime_ns: 1,
        version: Some(token.into()),
    }
}

impl FakeOrigin {
    /// The piece of a stream that began at `start` and is at `at` now.
    fn piece(
        &self,
        start: u64,
        at: u64,
        end: u64,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let mut now = self.now.lock().unwrap();
        if now.failing > 0 {
            now.failing -= 1;
            return Err(OriginError::unavailable("outage"));
        }
        if expected.is_some_and(|want| want != now.version) {
            return Err(OriginError::changed("rewritten"));
        }
        // Piece sizes vary as a backend's do: frames, buffers, whole reads.
        let len = [4 << 10, 64 << 10, 300 << 10, LARGEST_PIECE][(at / 7919 % 4) as usize];
        let from = (at as usize).min(now.bytes.len());
        let to = (from + len).min(end as usize).min(now.bytes.len());
        let version = file_version(self.size, &now.version);
        let cached = self.cache.cached_bytes_in(&version, from as u64, to as u64);
        if cached > 0 {
            let broken = format!(
                "fetched {from}..{to} of {}, {cached} bytes of it cached",
                now.version
            );
            now.broken.push(broken);
        }
        let unstored = (at - start) - self.cache.cached_bytes_in(&version, start, at);
        // The batches being stored, and one arriving.
        let bound = (STORING_AT_ONCE + 1) * (CHUNK_BATCH + LARGEST_PIECE);
        if unstored > bound as u64 {
            now.broken.push(format!(
                "a stream from {start} holds {unstored} bytes unstored at {at}"
            ));
        }
        Ok(now.bytes[from..to].to_vec())
    }
}

impl Source for FakeOrigin {
    fn read_stream<'a>(
        &'a self,
        _path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let end = offset.saturating_add(len);
        ReadStream::new(futures_util::stream::unfold(
            (offset, false),
            move |(at, over)| async move {
                if over || at >= end {
                    return None;
                }
                let piece = self.piece(offset, at, end, expected);
                tokio::task::yield_now().await;
                match piece {
                    Ok(bytes) if bytes.is_empty() => None,
                    Ok(bytes) => {
                        let at = at + bytes.len() as u64;
                        Some((Ok(bytes), (at, false)))
                    }
                    Err(e) => Some((Err(e), (at, true))),
                }
            },
        ))
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A reader asks for `len` bytes at `at` (a fraction of the size), fetching
    /// at least `window` bytes past a gap.
    Read { at: f64, len: u32, window: u32 },
    /// Two readers at once.
    Concurrent { a: f64, b: f64, len: u32 },
    /// Read-ahead from `at`.
    Ahead { at: f64, window: u32 },
    /// The scanner reads tags there (in its own task, exactly the range).
    Tags { at: f64, len: u32 },
    /// The next `n` pieces served fail.
    Outage { n: u32 },
    /// The file is rewritten with other bytes of the same size.
    Rewrite,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0.0..1.0f64, 1u32..300_000, 1u32..2_000_000)
            .prop_map(|(at, len, window)| Op::Read { at, len, window }),
        2 => (0.0..1.0f64, 0.0..1.0f64, 1u32..200_000)
            .prop_map(|(a, b, len)| Op::Concurrent { a, b, len }),
        2 => (0.0..1.0f64, 1u32..2_000_000).prop_map(|(at, window)| Op::Ahead { at, window }),
        1 => (0.0..1.0f64, 1u32..200_000).prop_map(|(at, len)| Op::Tags { at, len }),
        1 => (1u32..3).prop_map(|n| Op::Outage { n }),
        1 => Just(Op::Rewrite),
    ]
}

fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_right(seed as u32 % 31) as u8
        })
        .collect()
}

/// Checks one read's answer against the version it asked for.
fn check(got: &OriginResult<Vec<u8>>, of: &[u8], at: u64, len: u32) -> Result<(), TestCaseError> {
    match got {
        Ok(bytes) => {
            let start = (at as usize).min(of.len());
            let end = start.saturating_add(len as usize).min(of.len());
            prop_assert!(bytes[..] == of[start..end], "wrong bytes at {}+{}", at, len);
        }
        Err(e) => prop_assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Changed),
            "unexpected error {e}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn reads_match_the_model_no_cached_byte_is_fetched_and_memory_stays_bounded(
        size in 1usize..3_000_000,
        ops in prop::collection::vec(op(), 1..24),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = Arc::new(ContentCache::open(dir.path(), u64::MAX, store).unwrap());
        let fake = Arc::new(FakeOrigin {
            now: Mutex::new(Current {
                bytes: content(size, 1),
                version: "v1".into(),
                failing: 0,
                broken: Vec::new(),
            }),
            cache: cache.clone(),
            size: size as u64,
        });
        let origin: Arc<dyn Source> = fake.clone();
        // The versions the mount knows of, with their bytes: reads of an old one
        // keep happening after a rewrite (an open file stays on its version).
        let mut versions = vec![(file_version(size as u64, "v1"), content(size, 1))];
        let result: Result<(), TestCaseError> = runtime.block_on(async {
            for (n, op) in ops.iter().enumerate() {
                // Alternate between the newest version and the first.
                let (version, bytes) = &versions[if n % 3 == 2 { 0 } else { versions.len() - 1 }];
                let at = |f: f64| (f * size as f64) as u64;
                match op {
                    Op::Read { at: f, len, window } => {
                        let got = cache
                            .read(version, Some(&origin), at(*f), *len, *window, Purpose::Audio)
                            .await;
                        check(&got, bytes, at(*f), *len)?;
                    }
                    Op::Concurrent { a, b, len } => {
                        let (x, y) = tokio::join!(
                            cache.read(version, Some(&origin), at(*a), *len, *len, Purpose::Audio),
                            cache.read(version, Some(&origin), at(*b), *len, *len, Purpose::Audio),
                        );
                        check(&x, bytes, at(*a), *len)?;
                        check(&y, bytes, at(*b), *len)?;
                    }
                    Op::Ahead { at: f, window } => {
                        let from = at(*f);
                        if let Some(stream) = cache.file(version).stream_ahead(from, from + *window as u64) {
                            tokio::spawn(stream.run(origin.clone()));
                        }
                    }
                    Op::Tags { at: f, len } => {
                        let got = cache
                            .read(version, Some(&origin), at(*f), *len, *len, Purpose::Tag)
                            .await;
                        check(&got, bytes, at(*f), *len)?;
                    }
                    Op::Outage { n } => fake.now.lock().unwrap().failing = *n,
                    Op::Rewrite => {
                        let seed = versions.len() as u8 + 1;
                        let token = format!("v{seed}");
                        let new = content(size, seed);
                        {
                            let mut now = fake.now.lock().unwrap();
                            now.bytes = new.clone();
                            now.version = token.clone();
                        }
                        let mut version = versions[0].0.clone();
                        version.version = Some(token);
                        versions.push((version, new));
                    }
                }
                let broken = fake.now.lock().unwrap().broken.clone();
                prop_assert!(broken.is_empty(), "{:?}", broken);
                // Whatever is cached reads back right without the origin.
                for (version, bytes) in &versions {
                    if let Some(cached) = cache.read_cached(version, 0, size as u32) {
                        prop_assert!(cached == *bytes, "cached bytes of another version");
                    }
                }
            }
            Ok(())
        });
        result?;
        let broken = fake.now.lock().unwrap().broken.clone();
        prop_assert!(broken.is_empty(), "{:?}", broken);
    }
}
