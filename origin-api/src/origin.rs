//! The trait a storage backend implements.

use async_trait::async_trait;

use crate::{EventSink, ListPage, Metadata, OriginResult, PollStats, ReadStream, WatchHandle};

/// One configured storage backend: a tree of files under a root.
///
/// Paths are relative to the origin's root, `/`-separated, without a leading slash;
/// the root itself is `""`. The adapter checks every path before it reaches you, so
/// an implementation never sees `..` or an absolute path.
///
/// Every method may be called concurrently from several tasks. Futures may be
/// dropped before they finish (the host enforces deadlines by dropping them), so
/// hold no state across an `.await` that a cancellation would leave broken.
#[async_trait]
pub trait Origin: Send + Sync + 'static {
    /// Metadata of `path`; [`crate::ErrorKind::NotFound`] when it does not exist.
    async fn stat(&self, path: &str) -> OriginResult<Metadata>;

    /// One page of the entries of directory `dir`: at most `limit` entries (`limit`
    /// is at least 1), starting after `cursor` (`None` for the first page), in an
    /// order that is stable while the directory does not change.
    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage>;

    /// Up to `len` bytes of `path` starting at `offset`. Returns fewer bytes only at
    /// the end of the file; an offset at or past the end gives an empty buffer, not
    /// an error.
    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>>;

    /// [`Origin::read`] of the version the host expects: `expected` is the
    /// [`Metadata::version`] this origin gave for `path` (`None` if it gave none).
    /// An origin that can tell answers [`crate::ErrorKind::Changed`] when the file
    /// is no longer that version, instead of bytes of another one.
    ///
    /// Since 1.1. The default reads without checking, so an origin written
    /// against 1.0 compiles unchanged, and a plugin built against 1.0 is called
    /// through this default by a 1.1 host.
    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let _ = expected;
        self.read(path, offset, len).await
    }

    /// `len` bytes of `path` from `offset` of the version `expected`, as a stream
    /// of pieces as the backend delivers them (see [`crate::read_stream`] for the
    /// contract). The host reads through this: an origin whose backend streams
    /// (an HTTP body, a file) should answer its pieces as they come, so the first
    /// bytes reach a reader before the last have arrived.
    ///
    /// Since 1.2. The default reads the range with [`Origin::read_version`] in
    /// pieces ([`ReadStream::in_pieces`]), so an origin written against 1.0 or
    /// 1.1 compiles unchanged, and a plugin built against either is read this
    /// way by a 1.2 host.
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        ReadStream::through_read_version(self, path, offset, len, expected)
    }

    /// A cheap check of whether the origin can serve right now.
    async fn health(&self) -> crate::Health;

    /// Starts sending changes below the root to `sink` until the returned handle is
    /// stopped or dropped.
    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle>;

    /// What this origin's watch has polled so far, if it watches by polling
    /// its listing (`poller::PollFigures::stats`); `None` otherwise. Called
    /// by the host for its metrics, often: read counters, do no I/O.
    ///
    /// Since 1.6. The default is `None`, and a plugin built earlier is
    /// answered `None` for.
    fn watch_stats(&self) -> Option<PollStats> {
        None
    }
}
