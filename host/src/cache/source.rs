//! Where the cache gets the bytes it lacks. In the mount that is an origin
//! through the registry (with its deadline, health accounting and change
//! reports); the read path only needs a ranged read of one version, so a test can
//! put a fake behind it.

use origin_api::{async_trait, OriginResult};

use crate::origins::registry::RegisteredOrigin;

/// A ranged read of one version of a file.
#[async_trait]
pub trait Source: Send + Sync {
    /// Up to `len` bytes of `path` at `offset`, of version `expected` (the
    /// origin's token, when it gives one): `Changed` if the file is another
    /// version now.
    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>>;
}

#[async_trait]
impl Source for RegisteredOrigin {
    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        RegisteredOrigin::read_version(self, path, offset, len, expected).await
    }
}
