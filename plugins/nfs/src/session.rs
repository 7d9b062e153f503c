//! The mount: one nfs-rs client (one TCP connection, RPCs multiplexed by XID)
//! made on first use with the deadline, and made again after it is lost.
//! With none live, one attempt runs at a time; a failed attempt answers for
//! [`RETRY_AFTER`], so calls fail fast while the server is away
//! (`origin_api::reconnect`).
//!
//! File handles are cached by path, across mounts: NFS handles outlive a
//! connection and a server restart. A stale handle (a server that moved the
//! files to new inodes, a restart that changed its handles) is forgotten and
//! the path looked up again from the export's root.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nfs_rs::{Attr, Mount};
use origin_api::reconnect::Reconnect;
use origin_api::{ErrorKind, OriginError, OriginResult};

use crate::errors::{fault, mount_error, origin_error, Fault};
use crate::links::{self, MAX_LINKS, TYPE_LNK};
use crate::nfs_settings::{NfsSettings, Version};

const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The largest READ asked: servers offer up to 4 MiB, but smaller READs,
/// several in flight, keep the link busy and the first bytes early.
const READ_SIZE: u32 = 1 << 20;
/// Handles kept before the cache starts over.
const HANDLES: usize = 65_536;

/// A live mount.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) mount: Arc<dyn Mount>,
    /// The export's root handle.
    root: Bytes,
    generation: u64,
    pub(crate) max_read: u32,
}

/// What a walk to a path found.
enum Walked {
    /// The handle, and the path it has from the export's root (links resolved).
    Found { fh: Bytes, resolved: String },
    /// A link on the way that cannot be followed, and why.
    Unfollowable(String),
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "the root"
    } else {
        path
    }
}

pub(crate) struct Session {
    settings: Arc<NfsSettings>,
    live: Reconnect<Live>,
    handles: Mutex<HashMap<String, Bytes>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The nfs-rs URL for `settings` (it takes its options only so).
pub(crate) fn mount_url(settings: &NfsSettings) -> String {
    let host = if settings.host.contains(':') {
        format!("[{}]", settings.host)
    } else {
        settings.host.clone()
    };
    let port = settings.port.map(|p| format!(":{p}")).unwrap_or_default();
    let export: String = settings
        .export
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    let version = match settings.version {
        Version::V3 => "3",
        Version::V4 => "4.1",
    };
    let mut url = format!(
        "nfs://{host}{port}{export}?version={version}&uid={}&gid={}",
        settings.uid, settings.gid
    );
    if let Some(mount_port) = settings.mount_port {
        url.push_str(&format!("&mountport={mount_port}"));
    }
    if !settings.privileged_port {
        url.push_str("&noresvport=true");
    }
    url
}

impl Session {
    pub(crate) fn new(settings: Arc<NfsSettings>) -> Session {
        Session {
            settings,
            live: Reconnect::new(RETRY_AFTER),
            handles: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn deadline(&self) -> Duration {
        self.settings.request_timeout
    }

    /// The live mount, made if there is none.
    pub(crate) async fn live(&self) -> OriginResult<Live> {
        self.live
            .get(|generation| async move {
                let made = self.mount(generation).await;
                if let Err(e) = &made {
                    tracing::debug!("cannot mount {}: {e}", self.settings.host);
                }
                made
            })
            .await
    }

    async fn mount(&self, generation: u64) -> OriginResult<Live> {
        let url = mount_url(&self.settings);
        let secs = self.deadline().as_secs();
        let (host, export) = (&self.settings.host, &self.settings.export);
        let mount = tokio::time::timeout(self.deadline(), nfs_rs::parse_url_and_mount(&url))
            .await
            .map_err(|_| {
                OriginError::timeout(format!(
                    "unreachable: {host} did not mount {export} within {secs} s"
                ))
            })?
            .map_err(|e| mount_error(&e, export))?;
        let mount: Arc<dyn Mount> = mount.into();
        let root = mount.getfh().await;
        // Handles outlive a mount (and a server restart): those kept are used
        // again, and any the server no longer knows come back stale.
        Ok(Live {
            max_read: mount.get_max_read_size().clamp(4096, READ_SIZE),
            mount,
            root,
            generation,
        })
    }

    /// Notes the failure `error` of `live`: a lost mount is dropped (the next
    /// call makes another), a stale handle forgets the cached ones.
    pub(crate) fn failed(&self, live: &Live, error: &nfs_rs::NfsError, what: &str) -> OriginError {
        match fault(error) {
            Fault::Gone => {
                tracing::debug!("nfs mount lost: {error}");
                self.drop_live(live);
            }
            Fault::Stale => lock(&self.handles).clear(),
            Fault::File => {}
        }
        origin_error(error, what)
    }

    /// Runs `call` within the deadline, noting its failure.
    pub(crate) async fn within<T>(
        &self,
        live: &Live,
        what: &str,
        call: impl std::future::Future<Output = nfs_rs::Result<T>>,
    ) -> Result<T, (OriginError, Fault)> {
        match tokio::time::timeout(self.deadline(), call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err((self.failed(live, &e, what), fault(&e))),
            Err(_) => {
                self.drop_live(live);
                Err((
                    OriginError::timeout(format!(
                        "unreachable: no answer about {what} within {} s",
                        self.deadline().as_secs()
                    )),
                    Fault::Gone,
                ))
            }
        }
    }

    /// Keeps the handle of origin path `path`.
    pub(crate) fn remember(&self, path: &str, fh: Bytes) {
        self.keep(self.settings.inside(path), fh);
    }

    /// Keeps the handle of `inside` (a path from the export's root).
    fn keep(&self, inside: String, fh: Bytes) {
        let mut handles = lock(&self.handles);
        if handles.len() >= HANDLES {
            handles.clear();
        }
        handles.insert(inside, fh);
    }

    /// The handle of the origin path `path` (below the library folder), from
    /// the cache or walked to.
    async fn resolve_once(&self, live: &Live, path: &str) -> Result<Bytes, (OriginError, Fault)> {
        let inside = self.settings.inside(path);
        if let Some(fh) = lock(&self.handles).get(&inside).cloned() {
            return Ok(fh);
        }
        match self.walk(live, path).await? {
            Walked::Found { fh, .. } => {
                self.keep(inside, fh.clone());
                Ok(fh)
            }
            Walked::Unfollowable(why) => Err((
                OriginError::not_found(format!("{}: {why}", shown(path))),
                Fault::File,
            )),
        }
    }

    /// Walks from the export's root to origin path `path`, one LOOKUP a
    /// folder (folders already walked come from the cache), following links
    /// (see `crate::links`).
    async fn walk(&self, live: &Live, path: &str) -> Result<Walked, (OriginError, Fault)> {
        let shown = shown(path);
        let segments = |path: &str| -> Vec<String> {
            path.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut pending: VecDeque<String> = segments(&self.settings.inside(path)).into();
        let (mut fh, mut walked, mut followed) = (live.root.clone(), String::new(), 0);
        while let Some(segment) = pending.pop_front() {
            let next = origin_api::path::join(&walked, &segment);
            if let Some(known) = lock(&self.handles).get(&next).cloned() {
                (fh, walked) = (known, next);
                continue;
            }
            let found = self
                .within(live, shown, live.mount.lookup(fh.clone(), &segment))
                .await?;
            let kind = match &found.attr {
                Some(attr) => attr.type_,
                None => {
                    self.within(live, shown, live.mount.getattr(found.fh.clone()))
                        .await?
                        .type_
                }
            };
            if kind != TYPE_LNK {
                self.keep(next.clone(), found.fh.clone());
                (fh, walked) = (found.fh, next);
                continue;
            }
            followed += 1;
            if followed > MAX_LINKS {
                return Ok(Walked::Unfollowable(format!(
                    "more than {MAX_LINKS} links in a row (a loop?)"
                )));
            }
            let text = self
                .within(live, shown, live.mount.readlink(found.fh))
                .await?;
            let Some(to) = links::resolve(&self.settings.export, &next, &text) else {
                return Ok(Walked::Unfollowable(format!(
                    "a link out of the export (to {text})"
                )));
            };
            let mut rest: VecDeque<String> = segments(&to).into();
            rest.extend(pending.drain(..));
            pending = rest;
            (fh, walked) = (live.root.clone(), String::new());
        }
        Ok(Walked::Found {
            fh,
            resolved: walked,
        })
    }

    /// Follows the link at origin path `path` afresh (a link may have been
    /// pointed elsewhere): where it leads from the export's root and its
    /// target's attributes, or `None` if it is dangling or cannot be followed.
    pub(crate) async fn follow(&self, path: &str) -> OriginResult<Option<(String, Attr)>> {
        lock(&self.handles).remove(&self.settings.inside(path));
        let followed = self
            .retrying(path, |live| async move {
                match self.walk(&live, path).await? {
                    Walked::Found { fh, resolved } => {
                        let attr = self
                            .within(&live, shown(path), live.mount.getattr(fh.clone()))
                            .await?;
                        self.remember(path, fh);
                        Ok(Some((resolved, attr)))
                    }
                    Walked::Unfollowable(why) => {
                        tracing::debug!(path, "leaving out a link: {why}");
                        Ok(None)
                    }
                }
            })
            .await;
        match followed {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::debug!(path, "leaving out a dangling link");
                Ok(None)
            }
            other => other,
        }
    }

    /// `call` on the handle of `path` (with the live mount), retried as
    /// [`Self::retrying`] says.
    pub(crate) async fn on_path<T, F, Fut>(&self, path: &str, call: F) -> OriginResult<T>
    where
        F: Fn(Live, Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<T, (OriginError, Fault)>>,
    {
        self.retrying(path, |live| {
            let call = &call;
            async move {
                let fh = self.resolve_once(&live, path).await?;
                call(live, fh).await
            }
        })
        .await
    }

    /// `attempt` with the live mount. A stale handle is looked up again from
    /// the export's root, and if that is stale too, from a new mount (whose
    /// root handle is new too).
    async fn retrying<T, F, Fut>(&self, path: &str, attempt: F) -> OriginResult<T>
    where
        F: Fn(Live) -> Fut,
        Fut: std::future::Future<Output = Result<T, (OriginError, Fault)>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let live = self.live().await?;
            match attempt(live.clone()).await {
                Err((_, Fault::Stale)) if tries < 3 => {
                    tracing::debug!(path, "stale file handle: looking the path up again");
                    lock(&self.handles).clear();
                    if tries == 2 {
                        self.drop_live(&live);
                    }
                }
                Err((e, _)) => return Err(e),
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// Forgets `live` if it is still the live mount: the next call makes another.
    fn drop_live(&self, live: &Live) {
        self.live.forget(live.generation);
    }
}
