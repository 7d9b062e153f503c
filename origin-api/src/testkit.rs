//! The conformance suite (feature `testkit`): every origin, whoever wrote it, should
//! pass it. Like rclone's `fstests`, it writes a known fixture tree into the backend
//! through a [`Fixture`] you implement (a folder, a bucket, an SFTP server), then
//! checks what your origin says about it: listing and paging, stat, ranged reads at
//! the edges, offsets beyond 4 GiB, missing paths, unicode and space-laden names,
//! versions (a replaced file is never read as its old version), streaming reads
//! (the pieces are the range; a file replaced mid-stream is never mixed), and watching
//! (create, modify, delete, and silence after the handle is dropped).
//!
//! ```ignore
//! use origin_api::testkit::{populate, run, Options};
//!
//! let fixture = MyFixture::new(/* where your backend keeps its files */);
//! let sparse = populate(&fixture).await?; // whether a 5 GiB sparse file could be made
//! let origin = open_my_origin(/* settings */).await?;
//! run(&*origin, &fixture, sparse, &Options::default()).await.assert_passed();
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{ChangeEvent, ChangeKind, EntryKind, ErrorKind, EventSink, Origin};

/// Writes the fixture tree into the backend behind the origin under test.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// Writes `data` to `path` (relative to the origin's root), creating parents.
    async fn write(&self, path: &str, data: &[u8]) -> io::Result<()>;

    /// Makes `path` a file of `size` bytes, all zero but for `tail` at its end,
    /// cheaply (a sparse file). Return `Ok(false)` when the backend cannot; the
    /// checks beyond 4 GiB are then reported as skipped.
    async fn write_sparse(&self, path: &str, size: u64, tail: &[u8]) -> io::Result<bool>;

    /// Removes the file at `path`.
    async fn remove(&self, path: &str) -> io::Result<()>;

    /// Renames the file at `from` over `to` (needed when
    /// [`Fixture::in_place_rewrites_visible`] is false). Default: unsupported.
    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let _ = (from, to);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this fixture cannot rename",
        ))
    }

    /// Makes what was written so far visible through the origin. The suite calls
    /// it after each batch of writes, so a backend that is built rather than
    /// written to (an archive, a read-only image) can be rebuilt once a batch,
    /// not once a file. Default: nothing to do.
    async fn commit(&self) -> io::Result<()> {
        Ok(())
    }

    /// The finest change of mtime the origin can see. No version built from
    /// what the backend reports can tell apart two writes of the same size
    /// within one tick (SFTP version 3 gives whole seconds), so the suite
    /// lets a tick pass before it rewrites a file. Default: zero (the
    /// origin sees changes however close together).
    fn mtime_granularity(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the origin can see a file rewritten in place (same size) while
    /// it is open for a stream. Samba cannot: it reports an open file's write
    /// time as of its opening while any client holds it open. When false, the
    /// check of a file replaced during a stream writes the new version beside
    /// it and renames it over (a new file) instead. Default: true.
    fn in_place_rewrites_visible(&self) -> bool {
        true
    }
}

/// Lets the origin's mtime tick over before a file is written again.
async fn next_tick(fixture: &dyn Fixture) {
    let tick = fixture.mtime_granularity();
    if !tick.is_zero() {
        tokio::time::sleep(tick + Duration::from_millis(50)).await;
    }
}

/// How the suite waits for a backend. The defaults suit a backend that pushes
/// changes within a second or two; a polling one needs `watch_timeout` above its
/// poll interval.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long to wait for each expected watch event (cover a polling
    /// interval). Default 10 s.
    pub watch_timeout: Duration,
    /// How long to listen for stray events after the watch handle is dropped.
    /// Default 2 s.
    pub quiet_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            watch_timeout: Duration::from_secs(10),
            quiet_period: Duration::from_secs(2),
        }
    }
}

/// The fixture tree's files.
pub const HELLO: (&str, &[u8]) = ("hello.txt", b"hello, world\n");
/// A file two levels down, of [`TRACK_LEN`] bytes of [`pattern`].
pub const TRACK: &str = "Artist/Album/01 - Track.flac";
/// The size of [`TRACK`].
pub const TRACK_LEN: usize = 100_000;
/// A unicode folder and a space-laden name.
pub const UNICODE: &str = "Ünïcødé ♫/with  spaces & signs.ogg";
/// A zero-byte file.
pub const EMPTY: &str = "empty.bin";
/// A folder of [`MANY_COUNT`] files, for paging.
pub const MANY_DIR: &str = "many";
/// How many files [`MANY_DIR`] holds.
pub const MANY_COUNT: usize = 25;
/// A sparse file larger than 4 GiB.
pub const SPARSE: &str = "big/sparse.bin";
/// The size of [`SPARSE`]: 5 GiB and a few bytes, so offsets need all 64 bits.
pub const SPARSE_LEN: u64 = 5 * 1024 * 1024 * 1024 + 21;
/// The last bytes of [`SPARSE`].
pub const SPARSE_TAIL: &[u8] = b"THE-END-OF-A-BIG-FILE";
/// The folder the watch checks write into.
pub const WATCH_DIR: &str = "watch";

/// Deterministic, position-dependent content: a shifted range reads differently.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
        .collect()
}

/// Writes the fixture tree. Returns whether the sparse file could be made.
pub async fn populate(fixture: &dyn Fixture) -> io::Result<bool> {
    fixture.write(HELLO.0, HELLO.1).await?;
    fixture.write(TRACK, &pattern(TRACK_LEN)).await?;
    fixture
        .write(UNICODE, "ünïcødé content ♫".as_bytes())
        .await?;
    fixture.write(EMPTY, b"").await?;
    for i in 0..MANY_COUNT {
        fixture
            .write(
                &format!("{MANY_DIR}/file {i:02}.txt"),
                format!("{i}").as_bytes(),
            )
            .await?;
    }
    fixture.write(&format!("{WATCH_DIR}/.keep"), b"").await?;
    let sparse = fixture
        .write_sparse(SPARSE, SPARSE_LEN, SPARSE_TAIL)
        .await?;
    fixture.commit().await?;
    Ok(sparse)
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks not run, and why.
    pub skipped: Vec<(&'static str, String)>,
    /// Checks that failed, and how.
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// Panics with every failure when any check failed.
    pub fn assert_passed(&self) {
        assert!(self.failed.is_empty(), "conformance failures:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.passed {
            writeln!(f, "  ok      {name}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  skipped {name}: {why}")?;
        }
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED  {name}: {why}")?;
        }
        Ok(())
    }
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs every check against `origin`, whose backend `fixture` writes to and which
/// [`populate`] has filled. `sparse` is what `populate` returned.
pub async fn run(
    origin: &dyn Origin,
    fixture: &dyn Fixture,
    sparse: bool,
    options: &Options,
) -> Report {
    let mut report = Report::default();
    let mut record = |name: &'static str, result: Check| match result {
        Ok(()) => report.passed.push(name),
        Err(why) => report.failed.push((name, why)),
    };
    record("health is healthy", check_health(origin).await);
    record("list root", check_list_root(origin).await);
    record("list pages", check_paging(origin).await);
    record("list nested and unicode", check_list_nested(origin).await);
    record("stat", check_stat(origin).await);
    record("missing paths", check_missing(origin).await);
    record("read whole file", check_read_whole(origin).await);
    record("read at the edges", check_read_edges(origin).await);
    record("concurrent reads", check_concurrent_reads(origin).await);
    record(
        "versions: a replaced file is never read as the old one",
        check_versions(origin, fixture).await,
    );
    record("streams: pieces are the range", check_streams(origin).await);
    let by_rename = !fixture.in_place_rewrites_visible();
    let replaced = if by_rename {
        "streams: a file replaced (renamed over) during a stream is never mixed"
    } else {
        "streams: a file replaced during a stream is never mixed"
    };
    record(
        replaced,
        check_stream_replaced(origin, fixture, by_rename).await,
    );
    if sparse {
        record("offsets beyond 4 GiB", check_large_offsets(origin).await);
    } else {
        report.skipped.push((
            "offsets beyond 4 GiB",
            "the fixture cannot make a sparse file".into(),
        ));
    }
    let watch = check_watch(origin, fixture, options).await;
    match watch {
        Ok(()) => report.passed.push("watch"),
        Err(why) => report.failed.push(("watch", why)),
    }
    report
}

async fn check_health(origin: &dyn Origin) -> Check {
    let health = origin.health().await;
    ensure!(
        health.is_healthy(),
        "health is {:?}: {}",
        health.status,
        health.reason
    );
    Ok(())
}

async fn list_all(
    origin: &dyn Origin,
    dir: &str,
    limit: u32,
) -> Result<(Vec<crate::DirEntry>, usize), String> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for pages in 1..=10_000 {
        let page = origin
            .list(dir, cursor.as_deref(), limit)
            .await
            .map_err(|e| format!("list {dir:?}: {e}"))?;
        ensure!(
            page.entries.len() <= limit as usize,
            "list {dir:?} returned {} entries for limit {limit}",
            page.entries.len()
        );
        entries.extend(page.entries);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((entries, pages)),
        }
    }
    Err(format!("list {dir:?} did not finish after 10000 pages"))
}

async fn check_list_root(origin: &dyn Origin) -> Check {
    let (entries, _) = list_all(origin, "", 1000).await?;
    let find = |name: &str| entries.iter().find(|e| e.name == name);
    let hello = find(HELLO.0).ok_or("hello.txt missing from the root listing")?;
    ensure!(
        hello.metadata.kind == EntryKind::File,
        "hello.txt is {:?}",
        hello.metadata.kind
    );
    ensure!(
        hello.metadata.size == HELLO.1.len() as u64,
        "hello.txt has size {}",
        hello.metadata.size
    );
    for dir in ["Artist", "Ünïcødé ♫", MANY_DIR] {
        let entry = find(dir).ok_or_else(|| format!("{dir:?} missing from the root listing"))?;
        ensure!(
            entry.metadata.kind == EntryKind::Directory,
            "{dir:?} is {:?}",
            entry.metadata.kind
        );
    }
    let empty = find(EMPTY).ok_or("empty.bin missing")?;
    ensure!(
        empty.metadata.size == 0,
        "empty.bin has size {}",
        empty.metadata.size
    );
    let names: BTreeSet<_> = entries.iter().map(|e| &e.name).collect();
    ensure!(
        names.len() == entries.len(),
        "the root listing repeats a name"
    );
    ensure!(
        entries.iter().all(|e| !e.name.contains('/')),
        "a name contains `/`"
    );
    Ok(())
}

async fn check_paging(origin: &dyn Origin) -> Check {
    let (entries, pages) = list_all(origin, MANY_DIR, 7).await?;
    let names: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
    ensure!(names.len() == entries.len(), "paging returned a name twice");
    let expected: BTreeSet<String> = (0..MANY_COUNT)
        .map(|i| format!("file {i:02}.txt"))
        .collect();
    ensure!(names == expected, "paging returned {names:?}");
    ensure!(
        pages >= MANY_COUNT.div_ceil(7),
        "{MANY_COUNT} entries came in {pages} pages of at most 7"
    );
    Ok(())
}

async fn check_list_nested(origin: &dyn Origin) -> Check {
    let (entries, _) = list_all(origin, "Artist/Album", 100).await?;
    let track = entries
        .iter()
        .find(|e| e.name == "01 - Track.flac")
        .ok_or("`01 - Track.flac` missing from Artist/Album")?;
    ensure!(
        track.metadata.size == TRACK_LEN as u64,
        "track size {}",
        track.metadata.size
    );
    // A file's listing and its stat say the same of it: the host keeps what
    // a watch's stat found and compares a later listing with it, and any
    // difference (an mtime to the second one way, to the millisecond the
    // other) reads the file again as if it had changed. A listing may lack
    // the version (some S3 servers list no ETag): it then says nothing of it.
    let stat = origin
        .stat(TRACK)
        .await
        .map_err(|e| format!("stat track: {e}"))?;
    let listed = &track.metadata;
    ensure!(
        stat.kind == listed.kind
            && stat.size == listed.size
            && stat.modified == listed.modified
            && (listed.version.is_none() || stat.version == listed.version),
        "the listing says {listed:?} of the track, stat says {stat:?}"
    );
    let (entries, _) = list_all(origin, "Ünïcødé ♫", 100).await?;
    ensure!(
        entries.iter().any(|e| e.name == "with  spaces & signs.ogg"),
        "unicode folder lists {:?}",
        entries.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
    Ok(())
}

async fn check_stat(origin: &dyn Origin) -> Check {
    let meta = origin
        .stat(TRACK)
        .await
        .map_err(|e| format!("stat track: {e}"))?;
    ensure!(
        meta.is_file() && meta.size == TRACK_LEN as u64,
        "stat track gave {meta:?}"
    );
    let meta = origin
        .stat("Artist")
        .await
        .map_err(|e| format!("stat dir: {e}"))?;
    ensure!(meta.is_dir(), "stat Artist gave {meta:?}");
    let meta = origin
        .stat(UNICODE)
        .await
        .map_err(|e| format!("stat unicode: {e}"))?;
    ensure!(meta.is_file(), "stat unicode gave {meta:?}");
    let meta = origin
        .stat(EMPTY)
        .await
        .map_err(|e| format!("stat empty: {e}"))?;
    ensure!(meta.is_file() && meta.size == 0, "stat empty gave {meta:?}");
    Ok(())
}

async fn check_missing(origin: &dyn Origin) -> Check {
    let missing = "no/such/file.flac";
    let kind = origin.stat(missing).await.err().map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "stat of a missing path gave {kind:?}"
    );
    let kind = origin.read(missing, 0, 10).await.err().map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "read of a missing path gave {kind:?}"
    );
    let kind = origin
        .list("no/such/dir", None, 10)
        .await
        .err()
        .map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "list of a missing dir gave {kind:?}"
    );
    // A path that is there but is not what was asked for.
    let kind = origin.list(HELLO.0, None, 10).await.err().map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "list of a file gave {kind:?}"
    );
    let kind = origin.read("Artist", 0, 10).await.err().map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "read of a folder gave {kind:?}"
    );
    Ok(())
}

async fn check_read_whole(origin: &dyn Origin) -> Check {
    let data = origin
        .read(TRACK, 0, TRACK_LEN as u32)
        .await
        .map_err(|e| format!("read: {e}"))?;
    ensure!(
        data == pattern(TRACK_LEN),
        "whole-file read differs ({} bytes)",
        data.len()
    );
    let data = origin
        .read(UNICODE, 0, 1000)
        .await
        .map_err(|e| format!("read unicode: {e}"))?;
    ensure!(
        data == "ünïcødé content ♫".as_bytes(),
        "unicode file read {data:?}"
    );
    let data = origin
        .read(HELLO.0, 0, 1 << 20)
        .await
        .map_err(|e| format!("read hello: {e}"))?;
    ensure!(
        data == HELLO.1,
        "a read longer than the file gave {} bytes",
        data.len()
    );
    Ok(())
}

/// `stat` gives a version; replaced by other bytes of the same size, the file
/// gets a new one, and a read that asks for the old version is answered with
/// `Changed` (or the old bytes whole), never with the new bytes.
async fn check_versions(origin: &dyn Origin, fixture: &dyn Fixture) -> Check {
    const PATH: &str = "versioned.bin";
    let first = pattern(64 * 1024);
    let second: Vec<u8> = first.iter().map(|b| !b).collect();
    fixture
        .write(PATH, &first)
        .await
        .map_err(|e| format!("fixture: {e}"))?;
    fixture
        .commit()
        .await
        .map_err(|e| format!("fixture: {e}"))?;
    let meta = origin.stat(PATH).await.map_err(|e| format!("stat: {e}"))?;
    let Some(old) = meta.version else {
        return Err("stat gave no version (Metadata::version is part of the contract)".into());
    };
    let read = origin
        .read_version(PATH, 0, first.len() as u32, Some(&old))
        .await
        .map_err(|e| format!("read of the current version: {e}"))?;
    ensure!(read == first, "the current version read back wrong");

    next_tick(fixture).await;
    fixture
        .write(PATH, &second)
        .await
        .map_err(|e| format!("fixture: {e}"))?;
    fixture
        .commit()
        .await
        .map_err(|e| format!("fixture: {e}"))?;
    let new = origin
        .stat(PATH)
        .await
        .map_err(|e| format!("stat: {e}"))?
        .version;
    ensure!(
        new.as_deref() != Some(old.as_str()),
        "replaced by other bytes, the file kept its version {old:?}"
    );
    match origin
        .read_version(PATH, 0, first.len() as u32, Some(&old))
        .await
    {
        Err(e) if e.kind() == ErrorKind::Changed => {}
        Ok(bytes) if bytes == first => {}
        Ok(_) => return Err("a read of the old version gave the new bytes".into()),
        Err(e) => return Err(format!("a read of the old version: {e} (want Changed)")),
    }
    let read = origin
        .read_version(PATH, 0, second.len() as u32, new.as_deref())
        .await
        .map_err(|e| format!("read of the new version: {e}"))?;
    ensure!(read == second, "the new version read back wrong");
    let _ = fixture.remove(PATH).await;
    Ok(())
}

/// Every piece of `stream`, or the error that ended it.
async fn pieces(mut stream: crate::ReadStream<'_>) -> Result<Vec<Vec<u8>>, crate::OriginError> {
    let mut all = Vec::new();
    while let Some(piece) = stream.next().await {
        all.push(piece?);
    }
    Ok(all)
}

/// A streaming read gives the bytes `read` gives, in non-empty pieces, for the
/// same ranges (edges included).
async fn check_streams(origin: &dyn Origin) -> Check {
    let content = pattern(TRACK_LEN);
    let len = TRACK_LEN as u64;
    let cases: [(u64, u64, &[u8], &str); 6] = [
        (0, u64::MAX, &content[..], "whole file, no length limit"),
        (4_097, 8_191, &content[4_097..4_097 + 8_191], "middle range"),
        (len - 1, 10, &content[TRACK_LEN - 1..], "last byte"),
        (len, 10, &[], "offset at the end"),
        (len + 1000, 10, &[], "offset past the end"),
        (500, 0, &[], "length 0"),
    ];
    for (offset, size, expected, what) in cases {
        let got = pieces(origin.read_stream(TRACK, offset, size, None))
            .await
            .map_err(|e| format!("{what} (offset {offset}, len {size}): {e}"))?;
        ensure!(got.iter().all(|p| !p.is_empty()), "{what}: an empty piece");
        ensure!(
            got.concat() == expected,
            "{what}: got {} bytes, expected {}",
            got.iter().map(Vec::len).sum::<usize>(),
            expected.len()
        );
    }
    let version = origin
        .stat(TRACK)
        .await
        .map_err(|e| format!("stat: {e}"))?
        .version;
    let got = pieces(origin.read_stream(TRACK, 0, len, version.as_deref()))
        .await
        .map_err(|e| format!("a stream of the current version: {e}"))?;
    ensure!(
        got.concat() == content,
        "a stream of the current version differs"
    );
    Ok(())
}

/// A file replaced by other bytes of the same size while a stream of it runs:
/// every piece after the replacement is still of the old bytes, or the stream
/// ends with `Changed`; never new bytes.
async fn check_stream_replaced(
    origin: &dyn Origin,
    fixture: &dyn Fixture,
    by_rename: bool,
) -> Check {
    const PATH: &str = "replaced-while-streamed.bin";
    const LEN: usize = 12 << 20;
    let first = pattern(LEN);
    let second: Vec<u8> = first.iter().map(|b| !b).collect();
    let fail = |e: io::Error| format!("fixture: {e}");
    fixture.write(PATH, &first).await.map_err(fail)?;
    fixture.commit().await.map_err(fail)?;
    let old = origin
        .stat(PATH)
        .await
        .map_err(|e| format!("stat: {e}"))?
        .version;
    let mut stream = origin.read_stream(PATH, 0, LEN as u64, old.as_deref());
    let mut at = match stream.next().await {
        Some(Ok(piece)) => {
            ensure!(piece[..] == first[..piece.len()], "the first piece differs");
            piece.len()
        }
        other => return Err(format!("the first piece: {other:?}")),
    };
    next_tick(fixture).await;
    if by_rename {
        const BESIDE: &str = "replaced-while-streamed.new";
        fixture.write(BESIDE, &second).await.map_err(fail)?;
        fixture.rename(BESIDE, PATH).await.map_err(fail)?;
    } else {
        fixture.write(PATH, &second).await.map_err(fail)?;
    }
    fixture.commit().await.map_err(fail)?;
    let outcome = loop {
        match stream.next().await {
            Some(Ok(piece)) => {
                ensure!(
                    at + piece.len() <= LEN && piece[..] == first[at..at + piece.len()],
                    "bytes {at}..{} are not the old version's",
                    at + piece.len()
                );
                at += piece.len();
            }
            Some(Err(e)) if e.kind() == ErrorKind::Changed => break "Changed",
            Some(Err(e)) => return Err(format!("at {at}: {e} (want old bytes or Changed)")),
            None => {
                ensure!(at == LEN, "the stream ended at {at} of {LEN}");
                break "the old bytes whole";
            }
        }
    };
    drop(stream);
    let new = origin
        .stat(PATH)
        .await
        .map_err(|e| format!("stat: {e}"))?
        .version;
    let got = pieces(origin.read_stream(PATH, 0, LEN as u64, new.as_deref()))
        .await
        .map_err(|e| format!("a stream of the new version (after {outcome}): {e}"))?;
    ensure!(
        got.concat() == second,
        "a stream of the new version differs"
    );
    let _ = fixture.remove(PATH).await;
    Ok(())
}

async fn check_read_edges(origin: &dyn Origin) -> Check {
    let content = pattern(TRACK_LEN);
    let len = TRACK_LEN as u64;
    let cases: [(u64, u32, &[u8], &str); 6] = [
        (0, 1, &content[..1], "first byte"),
        (len - 1, 10, &content[TRACK_LEN - 1..], "last byte"),
        (len, 10, &[], "offset at the end"),
        (len + 1000, 10, &[], "offset past the end"),
        (500, 0, &[], "length 0"),
        (4_097, 8_191, &content[4_097..4_097 + 8_191], "middle range"),
    ];
    for (offset, size, expected, what) in cases {
        let data = origin
            .read(TRACK, offset, size)
            .await
            .map_err(|e| format!("{what} (offset {offset}, len {size}): {e}"))?;
        ensure!(
            data == expected,
            "{what}: got {} bytes, expected {}",
            data.len(),
            expected.len()
        );
    }
    let data = origin
        .read(EMPTY, 0, 10)
        .await
        .map_err(|e| format!("read empty: {e}"))?;
    ensure!(data.is_empty(), "empty file read {} bytes", data.len());
    Ok(())
}

async fn check_concurrent_reads(origin: &dyn Origin) -> Check {
    let content = pattern(TRACK_LEN);
    let reads = (0..16u64).map(|i| origin.read(TRACK, i * 6_000, 5_000));
    let results = futures_join_all(reads).await;
    for (i, result) in results.into_iter().enumerate() {
        let data = result.map_err(|e| format!("concurrent read {i}: {e}"))?;
        let start = i * 6_000;
        ensure!(
            data == content[start..start + 5_000],
            "concurrent read {i} differs"
        );
    }
    Ok(())
}

async fn check_large_offsets(origin: &dyn Origin) -> Check {
    let meta = origin
        .stat(SPARSE)
        .await
        .map_err(|e| format!("stat sparse: {e}"))?;
    ensure!(meta.size == SPARSE_LEN, "sparse file size {}", meta.size);
    let tail_at = SPARSE_LEN - SPARSE_TAIL.len() as u64;
    let data = origin
        .read(SPARSE, tail_at, 4096)
        .await
        .map_err(|e| format!("read tail: {e}"))?;
    ensure!(data == SPARSE_TAIL, "tail read {data:?}");
    let four_gib = 1u64 << 32;
    let data = origin
        .read(SPARSE, four_gib - 2, 4)
        .await
        .map_err(|e| format!("read across 4 GiB: {e}"))?;
    ensure!(data == [0, 0, 0, 0], "read across 4 GiB gave {data:?}");
    let data = origin
        .read(SPARSE, SPARSE_LEN + 1, 4)
        .await
        .map_err(|e| format!("read past: {e}"))?;
    ensure!(
        data.is_empty(),
        "read past a 5 GiB end gave {} bytes",
        data.len()
    );
    Ok(())
}

async fn check_watch(origin: &dyn Origin, fixture: &dyn Fixture, options: &Options) -> Check {
    let (tx, mut rx) = mpsc::unbounded_channel::<ChangeEvent>();
    let sink = EventSink::new(move |event| {
        let _ = tx.send(event);
    });
    let handle = origin
        .watch(sink)
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let path = format!("{WATCH_DIR}/new file.txt");

    let io = |e: io::Error| format!("fixture: {e}");
    fixture.write(&path, b"first").await.map_err(io)?;
    fixture.commit().await.map_err(io)?;
    expect_event(&mut rx, &path, &[ChangeKind::Created], options).await?;
    // Let a coarse-mtime backend see a different modification time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fixture.write(&path, b"second, longer").await.map_err(io)?;
    fixture.commit().await.map_err(io)?;
    expect_event(
        &mut rx,
        &path,
        &[ChangeKind::Modified, ChangeKind::Created],
        options,
    )
    .await?;
    fixture.remove(&path).await.map_err(io)?;
    fixture.commit().await.map_err(io)?;
    expect_event(&mut rx, &path, &[ChangeKind::Removed], options).await?;

    drop(handle);
    while rx.try_recv().is_ok() {}
    let after = format!("{WATCH_DIR}/after drop.txt");
    fixture.write(&after, b"late").await.map_err(io)?;
    fixture.commit().await.map_err(io)?;
    let late = tokio::time::timeout(options.quiet_period, rx.recv()).await;
    let _ = fixture.remove(&after).await;
    match late {
        Ok(Some(event)) => Err(format!("event after the handle was dropped: {event:?}")),
        _ => Ok(()),
    }
}

async fn expect_event(
    rx: &mut mpsc::UnboundedReceiver<ChangeEvent>,
    path: &str,
    kinds: &[ChangeKind],
    options: &Options,
) -> Check {
    let deadline = tokio::time::Instant::now() + options.watch_timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) if event.path == path && kinds.contains(&event.kind) => return Ok(()),
            Ok(Some(event)) => seen.push(event),
            Ok(None) => return Err("the watch's sink was dropped".into()),
            Err(_) => {
                return Err(format!(
                    "no {kinds:?} event for {path:?} within {:?}; saw {seen:?}",
                    options.watch_timeout
                ))
            }
        }
    }
}

/// Polls all futures concurrently on the current task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
