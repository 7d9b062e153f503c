//! The read path against a reference model: random reads, read-aheads and
//! concurrent readers of a file, an origin that fails now and then and may
//! rewrite the file, all through the real content cache with a fake origin
//! behind its `Source` trait. Whatever happens, a read returns the bytes of the
//! version it asked for or an error, never other bytes, and no byte is fetched
//! twice while the cache holds it.

use std::sync::{Arc, Mutex};

use musicfs::cache::content_cache::{ContentCache, Purpose};
use musicfs::cache::manifest::FileVersion;
use musicfs::cache::source::Source;
use musicfs::store::Store;
use origin_api::{async_trait, ErrorKind, OriginError, OriginResult};
use proptest::prelude::*;

/// The file as the fake origin holds it now.
struct Current {
    bytes: Vec<u8>,
    version: String,
    /// Calls left that fail (an outage).
    failing: u32,
    /// How many times each byte of each version was fetched.
    fetched: Vec<(String, Vec<u32>)>,
}

struct FakeOrigin(Mutex<Current>);

#[async_trait]
impl Source for FakeOrigin {
    async fn read_version(
        &self,
        _path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        tokio::task::yield_now().await;
        let mut now = self.0.lock().unwrap();
        if now.failing > 0 {
            now.failing -= 1;
            return Err(OriginError::unavailable("outage"));
        }
        if expected.is_some_and(|want| want != now.version) {
            return Err(OriginError::changed("rewritten"));
        }
        let start = (offset as usize).min(now.bytes.len());
        let end = start.saturating_add(len as usize).min(now.bytes.len());
        let out = now.bytes[start..end].to_vec();
        let version = now.version.clone();
        let size = now.bytes.len();
        let counts = match now.fetched.iter_mut().find(|(v, _)| *v == version) {
            Some((_, counts)) => counts,
            None => {
                now.fetched.push((version, vec![0; size]));
                &mut now.fetched.last_mut().unwrap().1
            }
        };
        for count in &mut counts[start..end] {
            *count += 1;
        }
        Ok(out)
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
    /// The next `n` origin calls fail.
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
    fn reads_match_the_model_and_no_cached_byte_is_fetched_twice(
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
        let cache = ContentCache::open(dir.path(), u64::MAX, store).unwrap();
        let origin = FakeOrigin(Mutex::new(Current {
            bytes: content(size, 1),
            version: "v1".into(),
            failing: 0,
            fetched: Vec::new(),
        }));
        // The versions the mount knows of, with their bytes: reads of an old one
        // keep happening after a rewrite (an open file stays on its version).
        let mut versions = vec![(
            FileVersion {
                origin: "fake".into(),
                path: "f.flac".into(),
                size: size as u64,
                mtime_ns: 1,
                version: Some("v1".into()),
            },
            content(size, 1),
        )];
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
                        let _ = cache
                            .fetch_ahead(version, &origin, at(*f), size as u64, *window)
                            .await;
                    }
                    Op::Outage { n } => origin.0.lock().unwrap().failing = *n,
                    Op::Rewrite => {
                        let seed = versions.len() as u8 + 1;
                        let token = format!("v{seed}");
                        let new = content(size, seed);
                        {
                            let mut now = origin.0.lock().unwrap();
                            now.bytes = new.clone();
                            now.version = token.clone();
                        }
                        let mut version = versions[0].0.clone();
                        version.version = Some(token);
                        versions.push((version, new));
                    }
                }
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
        let now = origin.0.lock().unwrap();
        for (version, counts) in &now.fetched {
            let twice = counts.iter().filter(|c| **c > 1).count();
            prop_assert_eq!(twice, 0, "bytes of {} fetched twice while cached", version);
        }
    }
}
