//! The SMB origin: stat is one compound (CREATE, QUERY_INFO, CLOSE), list is
//! one QUERY_DIRECTORY batch per call through a held handle (see
//! `crate::listing`), read is READs of the server's size through one open
//! handle, several in flight, each confirmed by a stat sent after it came
//! (`origin_api::pipeline`).
//!
//! A file's version is its file id (the server's inode), size and
//! last-write time (100 ns ticks): a file replaced, rewritten or touched gets
//! a new one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use origin_api::pipeline::{pipelined, Request, Requests, Shape};
use origin_api::poller::{ListAll, Listing, Nudge};
use origin_api::{
    async_trait, DirEntry, EntryKind, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, ReadStream, WatchHandle,
};
use smb2::{DirectoryEntry, DirectoryReader, FileIdentity, FileInfo, ListOptions};

use crate::listing::{Cursor, Listings};
use crate::session::{shown, Live, Session};
use crate::smb_settings::SmbSettings;

/// READs in flight per read.
const IN_FLIGHT: usize = 16;
/// Entries per page when the poller walks the tree.
const WALK_PAGE: u32 = 1000;

#[derive(Clone)]
pub(crate) struct SmbOrigin {
    session: Arc<Session>,
    listings: Arc<Listings<Reading>>,
    /// What the watch's polls did, for the host's metrics.
    polls: origin_api::poller::PollFigures,
}

/// A listing in progress.
pub(crate) struct Reading {
    live: Live,
    /// `None` once the server has said the folder ends.
    reader: Option<DirectoryReader>,
    /// Entries read and not yet handed out.
    buffered: VecDeque<DirEntry>,
    /// Entries handed out so far.
    handed: usize,
}

fn modified(time: smb2::pack::FileTime) -> std::time::SystemTime {
    time.to_system_time().unwrap_or(std::time::UNIX_EPOCH)
}

fn version(
    id: Option<u64>,
    size: u64,
    written: smb2::pack::FileTime,
    changed: smb2::pack::FileTime,
) -> String {
    format!("{}:{size}:{}:{}", id.unwrap_or(0), written.0, changed.0)
}

fn metadata_of(info: &FileInfo, identity: Option<&FileIdentity>) -> Metadata {
    if info.is_directory {
        return Metadata::directory(modified(info.modified));
    }
    Metadata {
        version: Some(version(
            identity.map(|i| i.index_number),
            info.size,
            info.modified,
            info.changed,
        )),
        ..Metadata::file(info.size, modified(info.modified))
    }
}

fn entry_metadata(entry: &DirectoryEntry) -> Metadata {
    if entry.is_directory {
        return Metadata::directory(modified(entry.modified));
    }
    Metadata {
        version: Some(version(
            entry.index_number,
            entry.size,
            entry.modified,
            entry.changed,
        )),
        ..Metadata::file(entry.size, modified(entry.modified))
    }
}

impl SmbOrigin {
    pub(crate) fn open(settings: SmbSettings) -> SmbOrigin {
        tracing::debug!(settings = ?settings, "smb origin opened");
        SmbOrigin {
            session: Arc::new(Session::new(Arc::new(settings))),
            listings: Arc::default(),
            polls: Default::default(),
        }
    }

    fn inside(&self, path: &str) -> String {
        self.session.settings().inside(path)
    }

    /// A new listing of `dir`, its handle open.
    async fn open_listing(&self, dir: &str) -> OriginResult<Reading> {
        let inside = self.inside(dir);
        let mut opened = None;
        let reader = self
            .session
            .on_live(shown(dir), |live| {
                opened = Some(live.clone());
                async move {
                    let options = ListOptions::new().index_numbers(true);
                    live.tree
                        .open_directory_reader_with(live.conn.clone(), &inside, options)
                        .await
                }
            })
            .await?;
        Ok(Reading {
            live: opened.expect("on_live ran the call"),
            reader: Some(reader),
            buffered: VecDeque::new(),
            handed: 0,
        })
    }

    /// Reads batches into `reading` until it holds `want` entries or the
    /// folder ends.
    async fn fill(&self, dir: &str, reading: &mut Reading, want: usize) -> OriginResult<()> {
        while reading.buffered.len() < want {
            let Some(reader) = reading.reader.as_mut() else {
                return Ok(());
            };
            let batch =
                match tokio::time::timeout(self.session.deadline(), reader.next_batch()).await {
                    Ok(Ok(batch)) => batch,
                    Ok(Err(e)) => return Err(self.session.failed(&reading.live, &e, shown(dir))),
                    Err(_) => {
                        self.session.drop_live(&reading.live);
                        return Err(self.session.timed_out(shown(dir)));
                    }
                };
            let Some(batch) = batch else {
                reading.reader = None;
                return Ok(());
            };
            for entry in batch {
                if entry.name == "." || entry.name == ".." {
                    continue;
                }
                if entry.is_link() {
                    tracing::debug!(
                        dir,
                        name = entry.name,
                        "leaving out a link the server did not follow"
                    );
                    continue;
                }
                let metadata = entry_metadata(&entry);
                reading.buffered.push_back(DirEntry {
                    name: entry.name,
                    metadata,
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Origin for SmbOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let inside = self.inside(path);
        let (info, identity) = self
            .session
            .on_live(shown(path), |mut live| async move {
                live.tree.stat_with_identity(&mut live.conn, &inside).await
            })
            .await?;
        if info.is_link() {
            return Err(OriginError::not_found(format!(
                "{}: a link the server did not follow",
                shown(path)
            )));
        }
        Ok(metadata_of(&info, identity.as_ref()))
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let limit = limit.max(1) as usize;
        let held = cursor.and_then(|c| Some((c.id, self.listings.get(c.id, dir)?)));
        let (id, reading) = match held {
            Some(held) => held,
            None => self.listings.hold(dir, self.open_listing(dir).await?),
        };
        let mut reading = reading.lock().await;
        let from = cursor.map_or(0, |c| c.handed);
        if reading.handed != from {
            // Not where this cursor left it (a listing opened again, or a
            // cursor used twice): start over and skip what was handed out.
            if reading.handed > from {
                *reading = self.open_listing(dir).await?;
            }
            let skip = from - reading.handed;
            let filled = self.fill(dir, &mut reading, skip).await;
            if let Err(e) = filled {
                self.listings.release(id);
                return Err(e);
            }
            let skip = skip.min(reading.buffered.len());
            reading.buffered.drain(..skip);
            reading.handed += skip;
        }
        if let Err(e) = self.fill(dir, &mut reading, limit).await {
            self.listings.release(id);
            return Err(e);
        }
        let take = limit.min(reading.buffered.len());
        let entries: Vec<DirEntry> = reading.buffered.drain(..take).collect();
        reading.handed += take;
        let next_cursor = if reading.buffered.is_empty() && reading.reader.is_none() {
            self.listings.release(id);
            None
        } else {
            Some(
                Cursor {
                    id,
                    handed: reading.handed,
                }
                .text(),
            )
        };
        Ok(ListPage {
            entries,
            next_cursor,
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

    /// The file opened (after a stat, when no version is asked for), then
    /// READs of [`IN_FLIGHT`] at once through the one handle, each handed on
    /// once a stat sent after it came has found the version (see
    /// `origin_api::pipeline`).
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let session = self.session.clone();
        let inside = self.inside(path);
        let opened = async move {
            let what = shown(path);
            // With the version asked for known, the file is opened at once and
            // the version is left to the check after the first read (a round
            // trip less before the first byte): a piece is handed on only once
            // that check has found the version, so a file that is another one
            // by now ends the stream with `Changed` all the same.
            let version = match expected {
                Some(expected) => expected.to_owned(),
                None => {
                    let stat_inside = inside.clone();
                    let (info, identity) = session
                        .on_live(what, |mut live| async move {
                            live.tree
                                .stat_with_identity(&mut live.conn, &stat_inside)
                                .await
                        })
                        .await?;
                    if info.is_directory || info.is_link() {
                        return Err(OriginError::not_found(format!("{path}: not a file")));
                    }
                    metadata_of(&info, identity.as_ref())
                        .version
                        .expect("a file has a version")
                }
            };
            let mut opened_on = None;
            let open_inside = inside.clone();
            let reader = session
                .on_live(what, |live| {
                    opened_on = Some(live.clone());
                    async move {
                        live.tree
                            .open_file_reader(live.conn.clone(), &open_inside)
                            .await
                    }
                })
                .await?;
            if reader.info().is_directory {
                return Err(OriginError::not_found(format!("{path}: not a file")));
            }
            let live = opened_on.expect("on_live ran the call");
            let end = offset.saturating_add(len).min(reader.size());
            let reader = Arc::new(reader);
            let shape = Shape {
                piece: live.max_read,
                in_flight: IN_FLIGHT,
                deadline: session.deadline(),
                in_order: false,
            };
            let (owned, secs) = (path.to_owned(), session.deadline().as_secs());
            let requests = Requests {
                read: {
                    let (session, live, reader, path) =
                        (session.clone(), live.clone(), reader.clone(), owned.clone());
                    move |at: u64, count: u32| -> Request<Vec<u8>> {
                        let (session, live, reader, path) =
                            (session.clone(), live.clone(), reader.clone(), path.clone());
                        Box::pin(async move {
                            reader
                                .read_at(at, u64::from(count))
                                .await
                                .map_err(|e| session.failed(&live, &e, &path))
                        })
                    }
                },
                check: {
                    let (session, live, path) = (session.clone(), live.clone(), owned.clone());
                    move || -> Request<()> {
                        let (session, mut live, path, inside) =
                            (session.clone(), live.clone(), path.clone(), inside.clone());
                        let version = version.clone();
                        Box::pin(async move {
                            match live.tree.stat_with_identity(&mut live.conn, &inside).await {
                                Ok((now, identity))
                                    if metadata_of(&now, identity.as_ref()).version.as_ref()
                                        == Some(&version) =>
                                {
                                    Ok(())
                                }
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

    /// Connects (when no connection is live), then stats the library folder.
    async fn health(&self) -> Health {
        match self.stat("").await {
            Ok(meta) if meta.kind == EntryKind::Directory => Health::healthy(),
            Ok(_) => Health::unhealthy("the library path is not a folder"),
            Err(e) => Health::unhealthy(e.message().to_owned()),
        }
    }

    /// The shared listing poller, nudged by CHANGE_NOTIFY (see
    /// [`notify_changes`]).
    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let every = self.session.settings().poll_interval;
        let (polling, nudge) = origin_api::poller::start_counted(
            Arc::new(self.clone()),
            every,
            sink,
            self.polls.clone(),
        )
        .await;
        let notifier = tokio::spawn(notify_changes(self.session.clone(), nudge, every));
        Ok(WatchHandle::on_stop(move || {
            notifier.abort();
            drop(polling);
        }))
    }

    fn watch_stats(&self) -> Option<origin_api::PollStats> {
        Some(self.polls.stats())
    }
}

/// How long to wait before arming CHANGE_NOTIFY again after it failed or
/// ended (the poller covers the gap).
const REARM_AFTER: Duration = Duration::from_secs(10);

/// Nudges the poller whenever the server says something below the library
/// folder changed: a recursive CHANGE_NOTIFY on it, armed again after the
/// connection is lost. What changed comes from the listing, which is exact
/// where notifications are not (a server's buffer overflows). Samba reports
/// every change made through SMB, but of changes made on its own disk only
/// those in the watched folder itself (inotify is not recursive): those below
/// it are found by the next poll. A server without CHANGE_NOTIFY leaves the
/// poller alone.
async fn notify_changes(session: Arc<Session>, nudge: Nudge, every: Duration) {
    let root = session.settings().inside("");
    loop {
        let inside = root.clone();
        let armed = session
            .on_live("the root", |mut live| async move {
                live.tree.watch(&mut live.conn, &inside, true).await
            })
            .await;
        match armed {
            Ok(mut watcher) => {
                // Whatever changed while it was not armed.
                nudge.poll_now();
                loop {
                    match watcher.next_events().await {
                        Ok(_) => nudge.poll_now(),
                        Err(e) => {
                            tracing::debug!("change notification ended: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("change notification not armed: {e}"),
        }
        tokio::time::sleep(REARM_AFTER.min(every)).await;
    }
}

#[async_trait]
impl ListAll for SmbOrigin {
    async fn list_all(&self) -> OriginResult<Listing> {
        origin_api::poller::walk(self, WALK_PAGE).await
    }
}
