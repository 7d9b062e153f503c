//! Where the cache gets the bytes it lacks. In the mount that is an origin
//! through the registry (with its deadline, health accounting and change
//! reports); the read path only needs a streaming ranged read of one version, so
//! a test can put a fake behind it.

use std::future::Future;
use std::pin::Pin;

use origin_api::ReadStream;

use crate::origins::registry::RegisteredOrigin;

/// A streaming ranged read of one version of a file.
pub trait Source: Send + Sync {
    /// `len` bytes of `path` from `offset`, of version `expected` (the origin's
    /// token, when it gives one), as pieces in order: `Changed` if the file is
    /// another version now. See `origin_api::read_stream` for the contract.
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a>;

    /// Returns once the source is going away: a stream paused for its readers
    /// ends then. A source that never goes away never returns.
    fn taken_down(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

impl Source for RegisteredOrigin {
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        RegisteredOrigin::read_stream(self, path, offset, len, expected)
    }

    fn taken_down(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(RegisteredOrigin::taken_down(self))
    }
}
