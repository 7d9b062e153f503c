//! The SFTP origin: stat is an SFTP `STAT` (links followed), list is one
//! `OPENDIR`/`READDIR` pass kept as a snapshot for paging, read is a pipelined
//! run of `READ`s on one open handle (see `reading`), watch is the shared
//! listing poller over `list`.
//!
//! A file's version is its size and mtime: all SFTP version 3 (what OpenSSH
//! speaks) tells of a file. Its mtime is in whole seconds, so a rewrite of the
//! same size within the same second goes unseen.
//!
//! Every request has the `request_timeout_secs` deadline (russh-sftp's own
//! per-request timeout), and so does connecting and logging in. A timeout or a
//! lost channel drops that connection from the pool.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use origin_api::paging::{Cursor, Resume, Snapshots};
use origin_api::poller::{ListAll, Listing};
use origin_api::{
    async_trait, DirEntry, EntryKind, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, ReadStream, WatchHandle,
};
use russh_sftp::protocol::FileAttributes;

use crate::folder;
use crate::pool::Pool;
use crate::reading;
use crate::sftp_settings::SftpSettings;

/// Entries per page when the poller walks the tree.
const WALK_PAGE: u32 = 1000;

#[derive(Clone)]
pub(crate) struct SftpOrigin {
    settings: Arc<SftpSettings>,
    pool: Arc<Pool>,
    snapshots: Arc<Snapshots<DirEntry>>,
    /// What the watch's polls did, for the host's metrics.
    polls: origin_api::poller::PollFigures,
}

impl SftpOrigin {
    pub(crate) fn open(settings: SftpSettings) -> SftpOrigin {
        tracing::debug!(settings = ?settings, "sftp origin opened");
        let settings = Arc::new(settings);
        SftpOrigin {
            pool: Arc::new(Pool::new(settings.clone())),
            settings,
            snapshots: Arc::default(),
            polls: Default::default(),
        }
    }

    /// Every entry of folder `dir`, with links followed, read in a task of
    /// its own: a caller that gives up does not leave the handle open.
    async fn read_folder(&self, dir: &str) -> OriginResult<Vec<DirEntry>> {
        let connection = self.pool.get().await?;
        let remote = self.settings.remote(dir);
        let shown = if dir.is_empty() { "the root" } else { dir };
        tokio::spawn(folder::read(connection, remote, shown.to_owned()))
            .await
            .unwrap_or_else(|e| Err(OriginError::other(format!("listing {shown}: {e}"))))
    }
}

/// An entry's metadata from its SFTP attributes.
pub(crate) fn metadata_of(attrs: &FileAttributes) -> Metadata {
    let modified = UNIX_EPOCH + Duration::from_secs(attrs.mtime.unwrap_or(0) as u64);
    let kind = attrs.file_type();
    if kind.is_dir() {
        Metadata::directory(modified)
    } else if kind.is_file() {
        Metadata {
            version: Some(version_of(attrs)),
            ..Metadata::file(attrs.size.unwrap_or(0), modified)
        }
    } else {
        Metadata {
            kind: EntryKind::Other,
            ..Metadata::file(0, modified)
        }
    }
}

/// A file's version: its size and mtime.
pub(crate) fn version_of(attrs: &FileAttributes) -> String {
    format!("{}:{}", attrs.size.unwrap_or(0), attrs.mtime.unwrap_or(0))
}

#[async_trait]
impl Origin for SftpOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let connection = self.pool.get().await?;
        let shown = if path.is_empty() { "the root" } else { path };
        let attrs = connection
            .call(shown, connection.sftp.stat(self.settings.remote(path)))
            .await?;
        Ok(metadata_of(&attrs.attrs))
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let (snapshot, entries, start) = match self.snapshots.resume(dir, cursor.as_ref()) {
            Resume::Kept(id, entries, start) => (id, entries, start),
            Resume::Read => {
                let read = self.read_folder(dir).await?;
                self.snapshots.fresh(dir, read, cursor.as_ref())
            }
        };
        let end = start
            .saturating_add(limit.max(1) as usize)
            .min(entries.len());
        Ok(ListPage {
            entries: entries[start.min(end)..end].to_vec(),
            next_cursor: Cursor::after(snapshot, &entries, end).map(|c| c.to_string()),
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

    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let remote = self.settings.remote(path);
        reading::read_stream(self.pool.clone(), path, remote, offset, len, expected)
    }

    /// Connects (when no connection is live) and stats the library folder.
    async fn health(&self) -> Health {
        match self.stat("").await {
            Ok(meta) if meta.kind == EntryKind::Directory => Health::healthy(),
            Ok(_) => Health::unhealthy(format!(
                "{}: the library path is not a folder",
                self.settings.host
            )),
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
impl ListAll for SftpOrigin {
    async fn list_all(&self) -> OriginResult<Listing> {
        origin_api::poller::walk(self, WALK_PAGE).await
    }
}
