//! The origin itself: stat, paged listing, ranged reads with `pread`, health.
//!
//! All file-system calls are blocking, so each operation runs as one
//! `spawn_blocking` job on the plugin's runtime.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use origin_api::{
    async_trait, DirEntry, EntryKind, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, ReadStream, WatchHandle,
};

use crate::paging::Name;
use crate::watcher;
use origin_api::paging::{Cursor, Resume, Snapshots};

/// One blocking read of a stream: large enough that the hop to a blocking
/// thread is noise, small enough that the first bytes arrive at once.
const STREAM_PIECE: u64 = 1 << 20;

pub(crate) struct LocalOrigin {
    root: Arc<PathBuf>,
    snapshots: Arc<Snapshots<Name>>,
}

impl LocalOrigin {
    pub(crate) fn new(path: &str) -> OriginResult<Self> {
        if path.is_empty() {
            return Err(OriginError::invalid_config("key `path` is empty"));
        }
        let root = std::path::absolute(path)
            .map_err(|e| OriginError::invalid_config(format!("key `path` ({path}): {e}")))?;
        Ok(LocalOrigin {
            root: Arc::new(root),
            snapshots: Arc::new(Snapshots::default()),
        })
    }

    /// Runs blocking file-system work off the runtime's workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path) -> OriginResult<T> + Send + 'static,
    ) -> OriginResult<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || work(&root))
            .await
            .map_err(|e| OriginError::other(format!("blocking task failed: {e}")))?
    }
}

/// The canonical root: symlinks in the configured path itself are fine.
pub(crate) fn canonical_root(root: &Path) -> OriginResult<PathBuf> {
    fs::canonicalize(root).map_err(|e| {
        OriginError::unavailable(format!("root {} is not reachable: {e}", root.display()))
    })
}

/// Resolves `rel` below `root`, following symlinks only while they stay inside it.
pub(crate) fn resolve(root: &Path, rel: &str) -> OriginResult<PathBuf> {
    let root = canonical_root(root)?;
    if rel.is_empty() {
        return Ok(root);
    }
    let real = fs::canonicalize(root.join(rel)).map_err(|e| OriginError::from(e).with_path(rel))?;
    if !real.starts_with(&root) {
        return Err(OriginError::permission_denied(format!(
            "{rel}: a symlink leads outside the root"
        )));
    }
    Ok(real)
}

fn metadata_of(meta: &fs::Metadata) -> Metadata {
    let kind = if meta.is_file() {
        EntryKind::File
    } else if meta.is_dir() {
        EntryKind::Directory
    } else {
        EntryKind::Other
    };
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    Metadata {
        kind,
        size: if kind == EntryKind::File {
            meta.len()
        } else {
            0
        },
        modified,
        version: (kind == EntryKind::File).then(|| version_of(meta)),
    }
}

/// A file's version: device and inode (a file replaced by another), size, mtime and
/// ctime (rewritten in place, even with its mtime put back).
fn version_of(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}:{}.{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

trait WithPath {
    fn with_path(self, rel: &str) -> Self;
}

impl WithPath for OriginError {
    fn with_path(self, rel: &str) -> Self {
        OriginError::new(self.kind(), format!("{rel}: {}", self.message()))
    }
}

#[async_trait]
impl Origin for LocalOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let rel = path.to_owned();
        self.blocking(move |root| {
            let real = resolve(root, &rel)?;
            let meta = fs::metadata(real).map_err(|e| OriginError::from(e).with_path(&rel))?;
            Ok(metadata_of(&meta))
        })
        .await
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let rel = dir.to_owned();
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let snapshots = self.snapshots.clone();
        self.blocking(move |root| {
            let root = canonical_root(root)?;
            let real = resolve(&root, &rel)?;
            if !real.is_dir() {
                return Err(OriginError::not_found(format!("{rel}: not a folder")));
            }
            let (snapshot, names, start) = match snapshots.resume(&rel, cursor.as_ref()) {
                Resume::Kept(id, names, start) => (id, names, start),
                Resume::Read => snapshots.fresh(&rel, read_names(&real, &rel)?, cursor.as_ref()),
            };
            let mut entries = Vec::new();
            let mut index = start;
            while index < names.len() && entries.len() < limit as usize {
                let name = &names[index];
                index += 1;
                if let Some(metadata) = entry_metadata(&root, &real, &rel, name)? {
                    entries.push(DirEntry {
                        name: name.text.clone(),
                        metadata,
                    });
                }
            }
            let next_cursor = Cursor::after(snapshot, &names, index).map(|c| c.to_string());
            Ok(ListPage {
                entries,
                next_cursor,
            })
        })
        .await
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        self.read_version(path, offset, len, None).await
    }

    /// `fstat` before and after the read: a file that is not (or stops being,
    /// while read) the expected version is `Changed`, never bytes of another one.
    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let rel = path.to_owned();
        let expected = expected.map(str::to_owned);
        self.blocking(move |root| {
            let file = open_version(root, &rel, expected.as_deref())?;
            read_piece(&file, &rel, offset, len as u64, expected.as_deref())
        })
        .await
    }

    /// The file opened once, then read in [`STREAM_PIECE`]s, each its own
    /// blocking job with the version checked after it.
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let end = offset.saturating_add(len);
        let (rel, expected) = (Arc::<str>::from(path), expected.map(Arc::<str>::from));
        let state = (None::<Arc<File>>, offset, false);
        ReadStream::new(futures_util::stream::unfold(
            state,
            move |(file, at, over)| {
                let (rel, expected) = (rel.clone(), expected.clone());
                async move {
                    if over || at >= end {
                        return None;
                    }
                    let want = (end - at).min(STREAM_PIECE);
                    let piece = self
                        .blocking(move |root| {
                            let file = match file {
                                Some(file) => file,
                                None => Arc::new(open_version(root, &rel, expected.as_deref())?),
                            };
                            let bytes = read_piece(&file, &rel, at, want, expected.as_deref())?;
                            Ok((file, bytes))
                        })
                        .await;
                    match piece {
                        Ok((_, bytes)) if bytes.is_empty() => None,
                        Ok((file, bytes)) => {
                            let short = (bytes.len() as u64) < want;
                            let at = at + bytes.len() as u64;
                            Some((Ok(bytes), (Some(file), at, short)))
                        }
                        Err(e) => Some((Err(e), (None, at, true))),
                    }
                }
            },
        ))
    }

    async fn health(&self) -> Health {
        let checked = self
            .blocking(|root| {
                let real = canonical_root(root)?;
                let mut entries = fs::read_dir(&real)
                    .map_err(|e| OriginError::from(e).with_path(&real.display().to_string()))?;
                // Reading one entry proves the folder is readable, not just present.
                if let Some(Err(e)) = entries.next() {
                    return Err(OriginError::from(e));
                }
                Ok(())
            })
            .await;
        match checked {
            Ok(()) => Health::healthy(),
            Err(e) => Health::unhealthy(e.message().to_owned()),
        }
    }

    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let root = canonical_root(&self.root)?;
        watcher::start(root, sink)
    }
}

/// Whether a symlink's target is gone (dangling) or loops: a link to leave out.
fn is_gone_or_loop(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP)
}

/// Whether `target` is one of the folders the walk passed through to reach `rel`.
fn on_walked_path(root: &Path, rel: &str, target: &Path) -> bool {
    let mut walked = root.to_owned();
    rel.split('/').filter(|s| !s.is_empty()).any(|segment| {
        walked.push(segment);
        fs::canonicalize(&walked).is_ok_and(|real| real == target)
    })
}

/// The directory's entry names; names that are not UTF-8 are left out
/// (and logged), since origin paths are strings.
fn read_names(dir: &Path, rel: &str) -> OriginResult<Vec<Name>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| OriginError::from(e).with_path(rel))? {
        let entry = entry.map_err(|e| OriginError::from(e).with_path(rel))?;
        // d_type, from the listing itself: no stat.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        match entry.file_name().into_string() {
            Ok(text) => names.push(Name { text, is_dir }),
            Err(raw) => tracing::warn!(dir = rel, name = ?raw, "skipping a name that is not UTF-8"),
        }
    }
    Ok(names)
}

/// Metadata of entry `name` of folder `dir` (`rel` below the root), `Ok(None)` for
/// one to leave out: a symlink leading outside the root, a dangling link, a link
/// to a folder that contains it (a loop), or an entry gone since the folder was
/// read.
///
/// An entry that is there but cannot be stat'ed (a dead network mount gives
/// ENOTCONN or EIO) is not left out, since leaving it out would read as its
/// deletion: a folder is listed as a folder (its own listing then fails, and the
/// host keeps what it knew below it); a file fails this listing.
fn entry_metadata(
    root: &Path,
    dir: &Path,
    rel: &str,
    name: &Name,
) -> OriginResult<Option<Metadata>> {
    let path = dir.join(&name.text);
    let link = match fs::symlink_metadata(&path) {
        Ok(link) => link,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if name.is_dir => {
            tracing::warn!(path = %path.display(), "cannot stat a folder; listing it as one: {e}");
            return Ok(Some(Metadata::directory(std::time::UNIX_EPOCH)));
        }
        Err(e) => {
            let entry = origin_api::path::join(rel, &name.text);
            return Err(OriginError::from(e).with_path(&entry));
        }
    };
    if !link.file_type().is_symlink() {
        return Ok(Some(metadata_of(&link)));
    }
    let entry = || origin_api::path::join(rel, &name.text);
    let real = match fs::canonicalize(&path) {
        Ok(real) => real,
        Err(e) if is_gone_or_loop(&e) => {
            tracing::debug!(path = %path.display(), "leaving out a dangling or looping symlink");
            return Ok(None);
        }
        // A link into something that does not answer (a dead mount): there, not
        // examinable; leaving it out would read as its deletion.
        Err(e) => return Err(OriginError::from(e).with_path(&entry())),
    };
    if !real.starts_with(root) {
        tracing::debug!(path = %path.display(), "leaving out a symlink that leads outside the root");
        return Ok(None);
    }
    let meta = match fs::metadata(&real) {
        Ok(meta) => meta,
        Err(e) if is_gone_or_loop(&e) => return Ok(None),
        Err(e) => return Err(OriginError::from(e).with_path(&entry())),
    };
    // A link to the folder it is in, or to one above it (on disk, or on the path
    // the walk took, through other links): following it would list the same
    // tracks again, level after level, until ELOOP.
    if meta.is_dir() && (dir.starts_with(&real) || on_walked_path(root, rel, &real)) {
        tracing::debug!(path = %path.display(), "leaving out a symlink to a folder that contains it");
        return Ok(None);
    }
    Ok(Some(metadata_of(&meta)))
}

/// Opens `rel` below `root`: a regular file of version `expected` (when given).
fn open_version(root: &Path, rel: &str, expected: Option<&str>) -> OriginResult<File> {
    let real = resolve(root, rel)?;
    let file = File::open(&real).map_err(|e| OriginError::from(e).with_path(rel))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(OriginError::not_found(format!("{rel}: not a file")));
    }
    if expected.is_some_and(|want| version_of(&meta) != want) {
        return Err(OriginError::changed(format!(
            "{rel}: not the version asked for"
        )));
    }
    Ok(file)
}

/// Up to `len` bytes at `offset` of an open `file`, then `fstat` again: a file
/// that stopped being version `expected` while read is `Changed`.
fn read_piece(
    file: &File,
    rel: &str,
    offset: u64,
    len: u64,
    expected: Option<&str>,
) -> OriginResult<Vec<u8>> {
    let size = file.metadata()?.len();
    let want = len.min(size.saturating_sub(offset)) as usize;
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break, // shrank while we read
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(OriginError::from(e).with_path(rel)),
        }
    }
    buf.truncate(filled);
    let after = file.metadata()?;
    if expected.is_some_and(|want| version_of(&after) != want) {
        return Err(OriginError::changed(format!("{rel}: changed while read")));
    }
    Ok(buf)
}
