//! A read session: everything one reader of one file version needs, made
//! once when it opens and dropped when it closes.
//!
//! It holds the replicas the file had when opened, each with its state in
//! the cache ([`CachedFile`]: a read builds no key and looks nothing up by
//! one), the access pattern that sets the window, the memory of a read that
//! ran out its deadline, and the one place where a fetch goes to an origin:
//! [`Session::fetch`], failover between the replicas under one deadline.
//! A player's open file, a scan's tag read of one file and a pin's fetch of
//! one file are each a session; they differ only in the [`Route`] they
//! fetch by and the purpose of their bytes.

use std::sync::{Arc, Mutex};

use origin_api::OriginResult;

use super::access::{Access, Step};
use super::failover::{with_failover, ReadPolicy};
use super::timeouts::RecentTimeout;
use crate::cache::cached_file::CachedFile;
use crate::cache::content_cache::ContentCache;
use crate::cache::fill::Purpose;
use crate::cache::source::Source;
use crate::origins::registry::{RegisteredOrigin, Registry};
use crate::origins::router;
use crate::values::Replica;

/// Where a session's fetches go.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// The replicas' origins, best first (health, priority, latency).
    Replicas(&'a Registry),
    /// One origin, for the one version it was asked about (a scan reads the
    /// tags of what an origin listed, whatever its health).
    Origin(&'a Arc<RegisteredOrigin>),
}

/// One reader of one file version.
pub struct Session {
    replicas: Arc<[Replica]>,
    /// The replicas in the cache, in the same order.
    files: Box<[CachedFile]>,
    access: Mutex<Access>,
    timed_out: RecentTimeout,
}

impl Session {
    /// A session over `replicas` (the versions a file has now; its reads stay
    /// on them after the tree moves on).
    pub fn open(cache: &Arc<ContentCache>, replicas: &[Replica]) -> Session {
        Session {
            replicas: replicas.into(),
            files: replicas.iter().map(|r| cache.file(r)).collect(),
            access: Mutex::default(),
            timed_out: RecentTimeout::default(),
        }
    }

    /// The replicas it reads.
    pub fn replicas(&self) -> &Arc<[Replica]> {
        &self.replicas
    }

    /// Returns once no fetch of its replicas is running: what they received
    /// is stored (its reads may have been answered before, from the bytes as
    /// they arrived).
    pub async fn settled(&self) {
        for file in self.files.iter() {
            file.settled().await;
        }
    }

    /// Takes in a read of `size` bytes at `offset` (see [`Access::observe`]).
    pub fn observe(&self, offset: u64, size: u32) -> Step {
        self.access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(offset, size)
    }

    /// The last read that ran out its deadline.
    pub fn timed_out(&self) -> &RecentTimeout {
        &self.timed_out
    }

    /// `size` bytes at `offset` if some replica has them all cached, and which.
    pub fn read_cached(&self, offset: u64, size: u32) -> Option<(Vec<u8>, &Replica)> {
        self.files
            .iter()
            .zip(self.replicas.iter())
            .find_map(|(file, replica)| Some((file.read_cached(offset, size)?, replica)))
    }

    /// The replicas to fetch from, by their place, best first, and whether
    /// any is usable.
    fn candidates(&self, route: Route<'_>) -> (Vec<(usize, Arc<RegisteredOrigin>)>, bool) {
        match route {
            Route::Replicas(registry) => {
                let route = router::route(&self.replicas, registry);
                (route.candidates, route.any_usable)
            }
            Route::Origin(origin) => (vec![(0, origin.clone())], true),
        }
    }

    /// `size` bytes at `offset`, from the cache or else fetched (see
    /// `CachedFile::read`) from the first replica that answers, trying the
    /// next at once when one fails and retrying after the policy's delays
    /// while one was usable, all within the policy's deadline. `none_usable`
    /// is called each time no replica is healthy or degraded (the least bad
    /// is tried then). Returns the bytes and the replica they came from.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(
        &self,
        route: Route<'_>,
        policy: &ReadPolicy,
        offset: u64,
        size: u32,
        window: u32,
        purpose: Purpose,
        mut none_usable: impl FnMut(),
    ) -> OriginResult<(Vec<u8>, &Replica)> {
        let candidates = || {
            let (candidates, usable) = self.candidates(route);
            if !usable {
                none_usable();
            }
            (candidates, usable)
        };
        let attempt = |(i, origin): (usize, Arc<RegisteredOrigin>)| async move {
            let source: Arc<dyn Source> = origin;
            let (file, replica) = (&self.files[i], &self.replicas[i]);
            let read = file
                .read(Some(&source), offset, size, window, purpose)
                .await;
            if let Err(e) = &read {
                tracing::debug!(origin = %replica.origin, path = %replica.path, "read failed: {e}");
            }
            read.map(|bytes| (bytes, replica))
        };
        with_failover(candidates, attempt, &policy.retry_delays, policy.deadline).await
    }

    /// Keeps a stream running ahead of a sequential reader at `next`, by
    /// `window`, so a remote origin's latency overlaps playback: the streams
    /// already bringing those bytes run on, or one starts at the first byte
    /// that nobody has or is fetching, on the replica the router prefers.
    pub fn read_ahead(
        &self,
        registry: &Registry,
        runtime: &tokio::runtime::Handle,
        next: u64,
        window: u32,
    ) {
        if self.replicas.first().is_none_or(|r| next >= r.size) {
            return;
        }
        let until = next.saturating_add(window as u64);
        if self.files.iter().any(|file| file.want(next, until)) {
            return;
        }
        let (candidates, _) = self.candidates(Route::Replicas(registry));
        let Some((i, origin)) = candidates.into_iter().next() else {
            return;
        };
        if let Some(stream) = self.files[i].stream_ahead(next, until) {
            let source: Arc<dyn Source> = origin;
            let replica = self.replicas[i].clone();
            runtime.spawn(async move {
                if let Err(e) = stream.run(source).await {
                    tracing::debug!(origin = %replica.origin, path = %replica.path, "read-ahead failed: {e}");
                }
            });
        }
    }
}
