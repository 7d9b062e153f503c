//! The FUSE file system: a read-only view of the library tree, reading through the
//! content cache.
//!
//! Callbacks never block on async work. Metadata (lookup, getattr, readdir, xattrs)
//! is answered from the in-memory tree on the FUSE thread. A read first tries the
//! cache synchronously on the FUSE thread (warm reads never leave it); otherwise the
//! request moves to a tokio task with its reply object, which fetches what is
//! missing and replies from there. The session runs several FUSE threads.
//!
//! Writes never reach us: the mount is read-only (`ro`), so the kernel answers
//! EROFS itself.
//!
//! # How a read goes
//!
//! - **One version per open.** `open` records the replicas the file has then; its
//!   reads stay on them after the tree moves on, and every fetch asks the origin
//!   for that version. A file rewritten meanwhile fails the read (EIO) where its
//!   old bytes are not cached, and is shown anew once the change is seen.
//! - **Warm.** The cache is tried on the FUSE thread, for every replica: a read
//!   whose bytes are all cached never waits for anything else.
//! - **Cold.** The request moves to a tokio task with its reply. Right after a
//!   seek (or on the first read) it fetches just the kernel's request, so the
//!   first byte waits for the smallest answer an origin can give, and read-ahead
//!   starts beside it; a sequential reader that outran its read-ahead fetches a
//!   whole window.
//! - **Windows.** A window starts at 1 MiB and doubles while the reader stays
//!   sequential (requests up to 1 MiB from where it should read next count,
//!   since the kernel's own readahead arrives out of order over several FUSE
//!   threads), up to 8 MiB, or 32 MiB for an origin whose fetches showed a fixed
//!   cost per request (a remote store). A seek starts again at 1 MiB.
//! - **Read-ahead.** Up to two windows past the reader are fetched in the
//!   background, each claiming its byte range, so no byte is fetched twice at
//!   once (see `cache::in_flight`).
//! - **Memory.** Bounded per open file by the windows in flight (at most two
//!   read-aheads and the reader's own fetch), plus the shared 32 MiB of hot
//!   chunks.
//! - **Deadlines and cancellation.** A read has one deadline, twice `timeout_ms`,
//!   failover and retries included; past it the fetch's future is dropped, which
//!   cancels the plugin's task. A read that ran out its deadline is remembered for
//!   a second, so the kernel's immediate second try at the same pages fails at
//!   once. Read-ahead is not cancelled when the file closes: its bytes are cached
//!   for the next reader.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::cache::content_cache::{ContentCache, Purpose, MAX_WINDOW};
use crate::control::events::{Event, EventBus};
use crate::fs::errno::read_errno;
use crate::library::tree::{Node, NodeKind, Replica, Tree};
use crate::library::view::LibraryView;
use crate::origins::failover::{with_failover, ReadPolicy};
use crate::origins::registry::{RegisteredOrigin, Registry};
use crate::origins::router;

/// How long the kernel may cache names and attributes; changes are pushed with the
/// notifier, so this only bounds how stale a missed change can be.
const TTL: Duration = Duration::from_secs(10);
/// The first fetch of an uncached range, and how far read-ahead grows.
const FIRST_WINDOW: u32 = 1 << 20;
/// How far from where a sequential reader should read next a read may land and
/// still count as sequential.
const REORDER_SLACK: u64 = 1 << 20;
/// How many read-ahead fetches of one open file may run at once: overlapping two
/// hides a remote origin's per-request delay.
const READ_AHEADS: u32 = 2;
/// The longest a read waits for the origins to open after mounting.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// How long a read that ran out its deadline makes an overlapping read of the same
/// open file fail at once.
const TIMED_OUT_MEMORY: Duration = Duration::from_secs(1);

/// The last read of an open file that ran out its deadline. Linux answers a
/// failed readahead by asking at once for the same pages again; without this
/// memory, a reader of a hung origin would wait out a second deadline.
#[derive(Default)]
struct RecentTimeout(Mutex<Option<(std::time::Instant, u64, u64)>>);

impl RecentTimeout {
    fn record(&self, start: u64, end: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), start, end));
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether `[start, end)` overlaps a read that timed out just now.
    fn covers(&self, start: u64, end: u64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|(at, s, e)| at.elapsed() < TIMED_OUT_MEMORY && start < e && s < end)
    }
}

/// Per open file: the version it opened, where a sequential reader will read
/// next, and its read-ahead.
struct OpenFile {
    /// The replicas (versions) the file had when opened. Reads stay on them after
    /// the tree moves on to a new version, so one open reads one version whole
    /// (or fails where its bytes are gone), never old bytes and then new ones.
    replicas: Arc<[Replica]>,
    next_offset: u64,
    window: u32,
    /// Read-ahead fetches of this file running now (at most [`READ_AHEADS`]).
    reading_ahead: Arc<AtomicU32>,
    timed_out: Arc<RecentTimeout>,
    /// Bytes before this were cached or being fetched when read-ahead last looked:
    /// it need not walk them again on every read.
    ahead_checked: u64,
}

/// How a read fits the file's access pattern.
struct Pattern {
    fh: u64,
    window: u32,
    sequential: bool,
    reading_ahead: Option<Arc<AtomicU32>>,
    timed_out: Option<Arc<RecentTimeout>>,
    /// The open file's [`OpenFile::ahead_checked`].
    ahead_checked: u64,
}

/// The mounted file system.
pub struct MusicFs {
    view: LibraryView,
    cache: Arc<ContentCache>,
    registry: Arc<Registry>,
    events: EventBus,
    runtime: tokio::runtime::Handle,
    origins_started: tokio::sync::watch::Receiver<bool>,
    policy: ReadPolicy,
    open_files: Mutex<HashMap<u64, OpenFile>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
}

impl MusicFs {
    /// A file system over `view`, spawning slow reads on `runtime`.
    pub fn new(
        view: LibraryView,
        cache: Arc<ContentCache>,
        registry: Arc<Registry>,
        events: EventBus,
        runtime: tokio::runtime::Handle,
        origins_started: tokio::sync::watch::Receiver<bool>,
        policy: ReadPolicy,
    ) -> Self {
        MusicFs {
            view,
            cache,
            registry,
            events,
            runtime,
            origins_started,
            policy,
            open_files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        }
    }

    fn attr(&self, node: &Node) -> FileAttr {
        let (kind, size, perm, nlink) = match &node.kind {
            NodeKind::Dir { .. } => (FileType::Directory, 0, 0o555, 2),
            NodeKind::File { size, .. } => (FileType::RegularFile, *size, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(node.ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    /// The read-ahead window for a read at `offset` on handle `fh`: it doubles while
    /// the reader stays sequential, and falls back after a seek.
    fn pattern(&self, fh: u64, offset: u64, size: u32) -> Pattern {
        let mut files = self.open_files.lock().unwrap_or_else(|p| p.into_inner());
        let Some(file) = files.get_mut(&fh) else {
            return Pattern {
                fh,
                window: FIRST_WINDOW,
                sequential: false,
                reading_ahead: None,
                timed_out: None,
                ahead_checked: 0,
            };
        };
        let end = offset + size as u64;
        // The kernel's own read-ahead, spread over several FUSE threads, delivers a
        // sequential reader's requests slightly out of order: near counts as next.
        let near = offset.abs_diff(file.next_offset) <= REORDER_SLACK;
        let sequential = near && offset != 0;
        if sequential {
            file.window = (file.window.saturating_mul(2)).min(MAX_WINDOW);
            file.next_offset = file.next_offset.max(end);
        } else {
            if !near {
                file.window = FIRST_WINDOW;
                file.ahead_checked = 0;
            }
            file.next_offset = end;
        }
        Pattern {
            fh,
            window: file.window,
            sequential,
            reading_ahead: Some(file.reading_ahead.clone()),
            timed_out: Some(file.timed_out.clone()),
            ahead_checked: file.ahead_checked,
        }
    }

    /// Fetches the next windows past `next` in the background while the reader
    /// consumes this one, so a remote origin's latency overlaps playback. Up to
    /// [`READ_AHEADS`] windows are fetched, each by its own task.
    fn read_ahead(&self, replicas: &[Replica], next: u64, pattern: &Pattern) {
        let Some(running) = pattern.reading_ahead.clone() else {
            return;
        };
        let size = replicas[0].size;
        if next >= size {
            return;
        }
        let window = pattern.window;
        let until = next
            .saturating_add(READ_AHEADS as u64 * window as u64)
            .min(size);
        let from = pattern.ahead_checked.max(next);
        if from >= until {
            return;
        }
        // Nothing to do if any replica has (or is fetching) all of it.
        let mut first = from;
        for replica in replicas {
            match self.cache.first_unfetched(replica, from, until) {
                Some(at) => first = first.max(at),
                None => {
                    first = until;
                    break;
                }
            }
        }
        if let Some(file) = self
            .open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&pattern.fh)
        {
            file.ahead_checked = first;
        }
        if first >= until {
            return;
        }
        let reserved = running.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < READ_AHEADS).then_some(n + 1)
        });
        if reserved.is_err() {
            return;
        }
        let (cache, registry, replicas) =
            (self.cache.clone(), self.registry.clone(), replicas.to_vec());
        let deadline = self.policy.deadline;
        self.runtime.spawn(async move {
            let route = || {
                let route = router::route(&replicas, &registry);
                (route.candidates, false)
            };
            let attempt = |(replica, origin): (Replica, Arc<RegisteredOrigin>)| {
                let cache = cache.clone();
                async move {
                    cache
                        .fetch_ahead(&replica, origin.as_ref(), next, until, window)
                        .await
                }
            };
            let _ = with_failover(route, attempt, &[], deadline).await;
            running.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// A directory's entries, `.` and `..` first, in a stable order (the offsets the
/// kernel passes back index into it).
fn listing(tree: &Tree, ino: u64) -> Result<Vec<(&Node, &str)>, Errno> {
    let node = tree.get(ino).ok_or(Errno::ENOENT)?;
    let NodeKind::Dir { children } = &node.kind else {
        return Err(Errno::ENOTDIR);
    };
    let parent = tree.get(node.parent).unwrap_or(node);
    let mut entries = vec![(node, "."), (parent, "..")];
    entries.extend(
        children
            .iter()
            .filter_map(|(name, child)| Some((tree.get(*child)?, name.as_str()))),
    );
    Ok(entries)
}

fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

/// The extended attributes every file carries.
pub const XATTRS: [&str; 3] = [
    "user.musicfs.origin",
    "user.musicfs.path",
    "user.musicfs.cached",
];

impl Filesystem for MusicFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        // Listings carry attributes: a music server's walk of the tree costs one
        // request per directory, not one lookup per file.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // Directories need no per-open state: with this, the kernel stops asking
        // (see `opendir`), saving two requests per folder of a walk.
        let _ = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        Ok(())
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS here, with FUSE_NO_OPENDIR_SUPPORT granted, means "opening a
        // directory always succeeds": no OPENDIR or RELEASEDIR is sent again.
        reply.error(Errno::ENOSYS);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = self.view.snapshot();
        match name.to_str().and_then(|name| tree.lookup(parent.0, name)) {
            Some(node) => reply.entry(&TTL, &self.attr(node), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.view.snapshot().get(ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.view.snapshot();
        match listing(&tree, ino.0) {
            Ok(entries) => {
                for (i, (entry, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    let kind = match entry.kind {
                        NodeKind::Dir { .. } => FileType::Directory,
                        NodeKind::File { .. } => FileType::RegularFile,
                    };
                    if reply.add(INodeNo(entry.ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let tree = self.view.snapshot();
        match listing(&tree, ino.0) {
            Ok(entries) => {
                for (i, (entry, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    let attr = self.attr(entry);
                    if reply.add(
                        INodeNo(entry.ino),
                        i as u64 + 1,
                        name,
                        &TTL,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.view.snapshot().get(ino.0).map(|n| &n.kind) {
            Some(NodeKind::File { replicas, .. }) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.open_files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        fh,
                        OpenFile {
                            replicas: replicas.as_slice().into(),
                            next_offset: 0,
                            window: FIRST_WINDOW,
                            reading_ahead: Arc::new(AtomicU32::new(0)),
                            timed_out: Arc::default(),
                            ahead_checked: 0,
                        },
                    );
                // Content of a version never changes (a new version is a new tree
                // entry), so the kernel may keep its page cache across opens.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Some(NodeKind::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let tree: Arc<Tree> = self.view.snapshot();
        let opened = self
            .open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .map(|f| f.replicas.clone());
        let replicas: Arc<[Replica]> = match (opened, tree.get(ino.0).map(|n| &n.kind)) {
            (Some(opened), _) => opened,
            (None, Some(NodeKind::File { replicas, .. })) => replicas.as_slice().into(),
            (None, _) => return reply.error(Errno::ENOENT),
        };
        let replicas = &replicas[..];
        let pattern = self.pattern(fh.0, offset, size);
        let window = pattern.window;
        for replica in replicas {
            if let Some(bytes) = self.cache.read_cached(replica, offset, size) {
                if pattern.sequential {
                    self.read_ahead(replicas, offset + size as u64, &pattern);
                }
                if self.events.is_listened() {
                    self.events.publish(Event::FileAccessed {
                        path: tree.path_of(ino.0),
                        origin: replica.origin.clone(),
                        offset,
                        size,
                    });
                }
                return reply.data(&bytes);
            }
        }
        let end = offset + size as u64;
        if let Some(timed_out) = &pattern.timed_out {
            if timed_out.covers(offset, end) {
                return reply.error(Errno::EIO);
            }
        }
        let timed_out = pattern.timed_out.clone();
        // A sequential reader that outran its read-ahead fetches a whole window.
        // After a seek, fetch just what was asked (the first byte then waits for
        // the smallest request an origin can answer) and read ahead beside it.
        let window = if pattern.sequential {
            window
        } else {
            self.read_ahead(replicas, offset + size as u64, &pattern);
            size
        };
        let replicas: Vec<Replica> = replicas.to_vec();
        let path = tree.path_of(ino.0);
        let (cache, registry, events) = (
            self.cache.clone(),
            self.registry.clone(),
            self.events.clone(),
        );
        let mut origins_started = self.origins_started.clone();
        let policy = self.policy.clone();
        self.runtime.spawn(async move {
            // Right after mounting, origins may still be opening: wait (bounded)
            // rather than fail a read that a moment later would succeed.
            let startup = origins_started.wait_for(|started| *started);
            let _ = tokio::time::timeout(STARTUP_WAIT, startup).await;
            let mut reported = false;
            let route = || {
                let route = router::route(&replicas, &registry);
                if !route.any_usable && !reported {
                    reported = true;
                    tracing::warn!(path = %path, "no healthy replica; trying the least bad");
                    events.publish(Event::AllOriginsUnhealthy { path: path.clone() });
                }
                (route.candidates, route.any_usable)
            };
            let attempt = |(replica, origin): (Replica, Arc<RegisteredOrigin>)| {
                let cache = cache.clone();
                async move {
                    let read = cache.read(&replica, Some(origin.as_ref()), offset, size, window, Purpose::Audio).await;
                    if let Err(e) = &read {
                        tracing::debug!(origin = %replica.origin, path = %replica.path, "read failed: {e}");
                    }
                    read.map(|bytes| (bytes, replica.origin))
                }
            };
            let result = with_failover(route, attempt, &policy.retry_delays, policy.deadline).await;
            let error = match result {
                Ok((bytes, origin)) => {
                    if let Some(timed_out) = &timed_out {
                        timed_out.clear();
                    }
                    events.publish(Event::FileAccessed { path, origin, offset, size });
                    return reply.data(&bytes);
                }
                Err(e) => e,
            };
            if error.kind() == origin_api::ErrorKind::Timeout {
                if let Some(timed_out) = &timed_out {
                    timed_out.record(offset, end);
                }
            }
            reply.error(Errno::from_i32(read_errno(error.kind())));
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let tree = self.view.snapshot();
        let stats = self.cache.stats();
        let block = 4096u64;
        reply.statfs(
            stats.limit / block,
            stats.limit.saturating_sub(stats.bytes) / block,
            0,
            tree.node_count() as u64,
            0,
            block as u32,
            255,
            block as u32,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let tree = self.view.snapshot();
        let Some(node) = tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let NodeKind::File {
            replicas,
            size: file_size,
        } = &node.kind
        else {
            return reply.error(Errno::ENODATA);
        };
        let first = &replicas[0];
        let value = match name.to_str() {
            Some("user.musicfs.origin") => first.origin.clone(),
            Some("user.musicfs.path") => first.path.clone(),
            Some("user.musicfs.cached") => {
                let cached = replicas
                    .iter()
                    .map(|r| self.cache.cached_bytes(r))
                    .max()
                    .unwrap_or(0);
                match cached {
                    0 => "no".to_owned(),
                    c if c >= *file_size => "yes".to_owned(),
                    c => format!("partial ({c} of {file_size} bytes)"),
                }
            }
            _ => return reply.error(Errno::ENODATA),
        };
        xattr_reply(value.as_bytes(), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let tree = self.view.snapshot();
        let names: &[&str] = match tree.get(ino.0).map(|n| &n.kind) {
            Some(NodeKind::File { .. }) => &XATTRS,
            Some(NodeKind::Dir { .. }) => &[],
            None => return reply.error(Errno::ENOENT),
        };
        let mut value = Vec::new();
        for name in names {
            value.extend_from_slice(name.as_bytes());
            value.push(0);
        }
        xattr_reply(&value, size, reply);
    }
}
