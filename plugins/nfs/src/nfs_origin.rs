//! The NFS origin: stat is LOOKUP (handles cached by path) and GETATTR, list
//! is one READDIRPLUS page per call (the server's cookie and verifier are the
//! cursor, so a 100,000-entry folder streams), read is READs of the server's
//! size, several in flight, each confirmed by a GETATTR sent after it came
//! (`origin_api::pipeline`).
//!
//! A file's version is its file id, size, mtime and ctime (nanoseconds, as
//! NFS reports them): a file replaced, rewritten or touched gets a new one.

use std::sync::Arc;

use nfs_rs::{Attr, DirectoryCookie};
use origin_api::pipeline::{pipelined, Request, Requests, Shape};
use origin_api::poller::{ListAll, Listing};
use origin_api::{
    async_trait, DirEntry, EntryKind, ErrorKind, EventSink, Health, ListPage, Metadata, Origin,
    OriginError, OriginResult, ReadStream, WatchHandle,
};

use crate::links::{self, TYPE_LNK};
use crate::nfs_settings::NfsSettings;
use crate::pages::{Cursor, Page, Pages};
use crate::session::Session;

/// READs in flight per read.
const IN_FLIGHT: usize = 8;
/// Entries per page when the poller walks the tree.
const WALK_PAGE: u32 = 1000;
const TYPE_REG: u32 = 1;
const TYPE_DIR: u32 = 2;

#[derive(Clone)]
pub(crate) struct NfsOrigin {
    settings: Arc<NfsSettings>,
    session: Arc<Session>,
    pages: Arc<Pages>,
    /// What the watch's polls did, for the host's metrics.
    polls: origin_api::poller::PollFigures,
}

pub(crate) fn metadata_of(attr: &Attr) -> Metadata {
    let modified = attr.mtime.to_system_time();
    match attr.type_ {
        TYPE_DIR => Metadata::directory(modified),
        TYPE_REG => Metadata {
            version: Some(version_of(attr)),
            ..Metadata::file(attr.filesize, modified)
        },
        _ => Metadata {
            kind: EntryKind::Other,
            ..Metadata::file(0, modified)
        },
    }
}

pub(crate) fn version_of(attr: &Attr) -> String {
    format!(
        "{}:{}:{}.{}:{}.{}",
        attr.fileid,
        attr.filesize,
        attr.mtime.seconds,
        attr.mtime.nseconds,
        attr.ctime.seconds,
        attr.ctime.nseconds
    )
}

impl NfsOrigin {
    pub(crate) fn open(settings: NfsSettings) -> NfsOrigin {
        tracing::debug!(settings = ?settings, "nfs origin opened");
        let settings = Arc::new(settings);
        NfsOrigin {
            session: Arc::new(Session::new(settings.clone())),
            pages: Arc::default(),
            settings,
            polls: Default::default(),
        }
    }
}

impl NfsOrigin {
    /// One READDIRPLUS page of `dir` from `from`, held for the calls that
    /// take the rest of it.
    async fn read_page(
        &self,
        dir: &str,
        from: DirectoryCookie,
    ) -> OriginResult<(u64, Arc<Page>, usize)> {
        let session = &self.session;
        let page = session
            .on_path(dir, |live, fh| async move {
                let mut position = from;
                loop {
                    let page = session
                        .within(
                            &live,
                            shown(dir),
                            live.mount.readdirplus_page(fh.clone(), position),
                        )
                        .await?;
                    // Only `.` and `..`: go on to the next page.
                    if page.entries.is_empty() && !page.eof {
                        position = page.next;
                        continue;
                    }
                    return Ok(page);
                }
            })
            .await?;
        let mut entries = Vec::with_capacity(page.entries.len());
        for entry in page.entries {
            if entry.file_name.contains(char::REPLACEMENT_CHARACTER) {
                tracing::warn!(
                    dir,
                    name = entry.file_name,
                    "skipping a name that is not UTF-8"
                );
                continue;
            }
            let path = origin_api::path::join(dir, &entry.file_name);
            let metadata = match &entry.attr {
                Some(attr) if attr.type_ == TYPE_LNK => {
                    let Some((to, attr)) = session.follow(&path).await? else {
                        continue;
                    };
                    let metadata = metadata_of(&attr);
                    if metadata.is_dir() && links::leads_up(&self.settings.inside(dir), &to) {
                        tracing::debug!(path, "leaving out a link to a folder above it");
                        continue;
                    }
                    metadata
                }
                Some(attr) => {
                    if !entry.handle.is_empty() {
                        session.remember(&path, entry.handle.clone());
                    }
                    metadata_of(attr)
                }
                // No attributes in the reply: ask for them (links followed).
                None => match self.stat(&path).await {
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    other => other?,
                },
            };
            entries.push(DirEntry {
                name: entry.file_name,
                metadata,
            });
        }
        let page = Arc::new(Page {
            from,
            entries,
            next: (!page.eof).then_some(page.next),
        });
        Ok((self.pages.hold(dir, page.clone()), page, 0))
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "the root"
    } else {
        path
    }
}

#[async_trait]
impl Origin for NfsOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let session = &self.session;
        session
            .on_path(path, |live, fh| async move {
                let attr = session
                    .within(&live, shown(path), live.mount.getattr(fh))
                    .await?;
                Ok(metadata_of(&attr))
            })
            .await
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let (id, page, index) = match cursor {
            None => self.read_page(dir, DirectoryCookie::default()).await?,
            Some(Cursor::At(position)) => self.read_page(dir, position).await?,
            Some(Cursor::Held { id, index, from }) => match self.pages.get(id, dir) {
                Some(page) => (id, page, index),
                // No longer held: read it again from where it was read.
                None => {
                    let (id, page, _) = self.read_page(dir, from).await?;
                    (id, page, index)
                }
            },
        };
        let end = index
            .saturating_add(limit.max(1) as usize)
            .min(page.entries.len());
        let entries = page.entries[index.min(end)..end].to_vec();
        let next_cursor = if end < page.entries.len() {
            Some(Cursor::Held {
                id,
                index: end,
                from: page.from,
            })
        } else {
            page.next.map(Cursor::At)
        };
        Ok(ListPage {
            entries,
            next_cursor: next_cursor.map(|c| c.text()),
        })
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        self.read_version(path, offset, len, None).await
    }

    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        self.read_stream(path, offset, len as u64, expected)
            .collect()
            .await
    }

    /// GETATTR (the version asked for), then READs of the server's size, 8 in
    /// flight, each handed on once a GETATTR sent after it came has found the
    /// same version (see `origin_api::pipeline`).
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let session = self.session.clone();
        let opened = async move {
            let what = shown(path);
            let (live, fh, attr) = session
                .on_path(path, |live, fh| {
                    let session = &session;
                    async move {
                        let attr = session
                            .within(&live, what, live.mount.getattr(fh.clone()))
                            .await?;
                        Ok((live, fh, attr))
                    }
                })
                .await?;
            if !metadata_of(&attr).is_file() {
                return Err(OriginError::not_found(format!("{path}: not a file")));
            }
            let version = version_of(&attr);
            if expected.is_some_and(|v| v != version) {
                return Err(OriginError::changed(format!(
                    "{path}: not the version asked for"
                )));
            }
            let end = offset.saturating_add(len).min(attr.filesize);
            let shape = Shape {
                piece: live.max_read,
                in_flight: IN_FLIGHT,
                deadline: session.deadline(),
                in_order: false,
            };
            let (owned, secs) = (path.to_owned(), session.deadline().as_secs());
            let requests = Requests {
                read: {
                    let (session, live, fh, path) =
                        (session.clone(), live.clone(), fh.clone(), owned.clone());
                    move |at: u64, count: u32| -> Request<Vec<u8>> {
                        let (session, live, fh, path) =
                            (session.clone(), live.clone(), fh.clone(), path.clone());
                        Box::pin(async move {
                            match live.mount.read(fh, at, count).await {
                                Ok(data) => Ok(Vec::from(data)),
                                Err(e) => Err(session.failed(&live, &e, &path)),
                            }
                        })
                    }
                },
                check: {
                    let (session, live, fh, path) =
                        (session.clone(), live.clone(), fh.clone(), owned.clone());
                    move || -> Request<()> {
                        let (session, live, fh, path) =
                            (session.clone(), live.clone(), fh.clone(), path.clone());
                        let version = version.clone();
                        Box::pin(async move {
                            match live.mount.getattr(fh).await {
                                Ok(now) if version_of(&now) == version => Ok(()),
                                Ok(_) => Err(OriginError::changed(format!(
                                    "{path}: changed while it was read"
                                ))),
                                Err(e) => Err(session.failed(&live, &e, &path)),
                            }
                        })
                    }
                },
                timed_out: move || {
                    OriginError::timeout(format!(
                        "unreachable: no answer about {owned} within {secs} s"
                    ))
                },
            };
            Ok(pipelined(path, offset, end, shape, requests))
        };
        ReadStream::opened_by(opened)
    }

    /// Mounts (when no mount is live), then the NULL procedure and a GETATTR
    /// of the library folder.
    async fn health(&self) -> Health {
        match self.stat("").await {
            Ok(meta) if meta.kind == EntryKind::Directory => Health::healthy(),
            Ok(_) => Health::unhealthy("the library path is not a folder"),
            Err(e) => Health::unhealthy(e.message().to_owned()),
        }
    }

    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let every = self.settings.poll_interval;
        let polling = origin_api::poller::start_counted(
            Arc::new(self.clone()),
            every,
            sink,
            self.polls.clone(),
        );
        Ok(polling.await.0)
    }

    fn watch_stats(&self) -> Option<origin_api::PollStats> {
        Some(self.polls.stats())
    }
}

#[async_trait]
impl ListAll for NfsOrigin {
    async fn list_all(&self) -> OriginResult<Listing> {
        origin_api::poller::walk(self, WALK_PAGE).await
    }
}
