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
//! Reads are [`super::reader`]'s: this file turns the kernel's requests into its
//! calls and its answers into replies. A fully cached file may instead be
//! opened on its whole copy for the kernel to read by itself
//! ([`super::passthrough`]).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents,
    PollFlags, PollNotifier, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyXattr, Request,
};

use crate::cache::content_cache::ContentCache;
use crate::fs::errno::read_errno;
use crate::fs::passthrough::OpenModes;
use crate::library::tree::{Node, NodeKind, Replica, Tree};
use crate::library::view::LibraryView;
use crate::origins::registry::Registry;
use crate::pins::{normal, Pins};
use crate::read::failover::ReadPolicy;
use crate::read::reader::{Answer, Reader};
use crate::read::session::Session;
use crate::telemetry::events::{Event, EventBus};

/// How long the kernel may cache names (found or not) and attributes. Every
/// change to the tree is pushed to the kernel with the notifier, twice (see
/// `Daemon::refresh_tree`), so this only bounds how stale a change can stay if
/// both were lost; long, so a music server's walks and its probes for
/// `cover.jpg` are answered by the kernel without asking us.
const TTL: Duration = Duration::from_secs(3600);

/// Files smaller than this get no whole copy: a music server reading every
/// small file's tags (or a cover) once would otherwise write and sync a copy
/// of each, and the daemon serves them from memory quickly enough.
const SMALLEST_COPY: u64 = 1 << 20;
/// The longest a released file's copy waits for its streams to store what
/// they received (a stream nobody wants more of ends within 5 s).
const COPY_SETTLE_WAIT: Duration = Duration::from_secs(30);

/// A whole copy registered with the kernel, and the replica it holds.
struct Backing {
    id: BackingId,
    origin: String,
    size: u64,
}

/// The mounted file system.
pub struct MusicFs {
    view: LibraryView,
    /// For statfs and the cached attribute; reads go through `reader`.
    cache: Arc<ContentCache>,
    reader: Reader,
    events: EventBus,
    runtime: tokio::runtime::Handle,
    /// Whether the kernel agreed to passthrough (and we may register files).
    passthrough: bool,
    /// Whether the configuration asks for it (`[cache] passthrough`).
    passthrough_wanted: bool,
    modes: OpenModes<Backing>,
    /// For the pinned attribute.
    pins: Option<Arc<Pins>>,
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
            reader: Reader::new(
                cache.clone(),
                registry,
                events.clone(),
                runtime.clone(),
                origins_started,
                policy,
            ),
            cache,
            events,
            runtime,
            passthrough: false,
            passthrough_wanted: true,
            modes: OpenModes::default(),
            pins: None,
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        }
    }

    /// Whether to ask the kernel for passthrough (`[cache] passthrough`; it
    /// is asked by default).
    pub fn with_passthrough(mut self, wanted: bool) -> Self {
        self.passthrough_wanted = wanted;
        self
    }

    /// Answers `user.musicfs.pinned` from `pins`.
    pub fn with_pins(mut self, pins: Arc<Pins>) -> Self {
        self.pins = Some(pins);
        self
    }

    /// `yes` if a pin covers `ino` (itself or a folder above it), else `no`.
    fn pinned(&self, tree: &Tree, ino: u64) -> &'static str {
        let path = tree.path_of(ino);
        let pinned = self
            .pins
            .as_ref()
            .and_then(|pins| pins.covering(&normal(&path)));
        if pinned.is_some() {
            "yes"
        } else {
            "no"
        }
    }

    fn attr(&self, node: Node<'_>) -> FileAttr {
        let (kind, size, perm, nlink) = match node.file() {
            None => (FileType::Directory, 0, 0o555, 2),
            Some(file) => (FileType::RegularFile, file.size(), 0o444, 1),
        };
        let mtime = node.mtime();
        FileAttr {
            ino: INodeNo(node.ino()),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
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

    /// The backing file to pass an open of `ino` through to, if it gets one
    /// (see [`super::passthrough`]).
    fn backing_for(
        &self,
        ino: u64,
        replicas: &[Replica],
        reply: &ReplyOpen,
    ) -> Option<Arc<Backing>> {
        let backing = self.modes.open(ino, || {
            let (file, replica) = replicas
                .iter()
                .find_map(|r| Some((self.cache.whole_copy(r)?, r)))?;
            match reply.open_backing(&file) {
                Ok(id) => Some(Backing {
                    id,
                    origin: replica.origin.clone(),
                    size: replica.size,
                }),
                Err(e) => {
                    tracing::warn!(path = %replica.path, "cannot pass a file through to its copy: {e}");
                    None
                }
            }
        })?;
        if self.events.is_listened() {
            self.events.publish(Event::FileAccessed {
                path: self.view.snapshot().path_of(ino),
                origin: backing.origin.clone(),
                offset: 0,
                size: u32::try_from(backing.size).unwrap_or(u32::MAX),
            });
        }
        Some(backing)
    }

    /// Starts making the whole copy of the first fully cached replica of the
    /// file `session` read, unless one has a copy or the file is small: once
    /// its streams have stored what they received (its reads were answered as
    /// the bytes arrived, so the last of them may not be on disk yet).
    fn make_copy_if_cached(&self, session: Arc<Session>) {
        let replicas = session.replicas().clone();
        if replicas.first().is_none_or(|r| r.size < SMALLEST_COPY) {
            return;
        }
        let cache = self.cache.clone();
        self.runtime.spawn(async move {
            let _ = tokio::time::timeout(COPY_SETTLE_WAIT, session.settled()).await;
            drop(session);
            // The looking (a stat, perhaps a manifest read) is off the runtime.
            let copy = tokio::task::spawn_blocking(move || make_copy(&cache, &replicas));
            let _ = copy.await;
        });
    }
}

/// Makes the whole copy of the first fully cached of `replicas`, unless one
/// has a copy.
fn make_copy(cache: &ContentCache, replicas: &[Replica]) {
    if replicas.iter().any(|r| cache.has_whole_copy(r)) {
        return;
    }
    let Some(replica) = replicas.iter().find(|r| cache.fully_cached(r)) else {
        return;
    };
    match cache.make_whole_copy(replica) {
        Ok(true) => tracing::debug!(path = %replica.path, "whole copy made"),
        Ok(false) => {}
        Err(e) => tracing::warn!(path = %replica.path, "cannot make a whole copy: {e}"),
    }
}

/// A directory's entries, `.` and `..` first, in a stable order (the offsets the
/// kernel passes back index into it).
/// Walked, not collected: the kernel asks for a big folder a bufferful at a
/// time, each from an offset.
fn listing(tree: &Tree, ino: u64) -> Result<impl Iterator<Item = (Node<'_>, &str)>, Errno> {
    let node = tree.get(ino).ok_or(Errno::ENOENT)?;
    let NodeKind::Dir(children) = node.kind() else {
        return Err(Errno::ENOTDIR);
    };
    let parent = tree.get(node.parent()).unwrap_or(node);
    let children = children.iter().map(|child| (child, child.name()));
    Ok([(node, "."), (parent, "..")].into_iter().chain(children))
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
pub const XATTRS: [&str; 4] = [
    "user.musicfs.origin",
    "user.musicfs.path",
    "user.musicfs.cached",
    "user.musicfs.pinned",
];

/// The extended attributes every folder carries.
pub const FOLDER_XATTRS: [&str; 1] = ["user.musicfs.pinned"];

impl Filesystem for MusicFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        // The kernel's default of 12 background requests would cap the
        // read-ahead windows `fs::read_ahead` opens: 64, as mountpoint-s3 sets.
        let _ = config.set_max_background(64);
        // Listings carry attributes: a music server's walk of the tree costs one
        // request per directory, not one lookup per file.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // Directories need no per-open state: with this, the kernel stops asking
        // (see `opendir`), saving two requests per folder of a walk.
        let _ = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        // Registering backing files needs CAP_SYS_ADMIN: as anyone else, do
        // not ask for passthrough at all and keep every open as it was.
        // SAFETY: geteuid cannot fail.
        if self.passthrough_wanted
            && unsafe { libc::geteuid() } == 0
            && config.set_max_stack_depth(1).is_ok()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
        {
            self.passthrough = true;
        }
        tracing::debug!(passthrough = self.passthrough, "FUSE session started");
        Ok(())
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        count("opendir");
        // ENOSYS here, with FUSE_NO_OPENDIR_SUPPORT granted, means "opening a
        // directory always succeeds": no OPENDIR or RELEASEDIR is sent again.
        reply.error(Errno::ENOSYS);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        count("lookup");
        let tree = self.view.snapshot();
        match name.to_str().and_then(|name| tree.lookup(parent.0, name)) {
            Some(node) => reply.entry(&TTL, &self.attr(node), Generation(0)),
            // A negative entry (node 0) the kernel keeps: a name that appears
            // later is invalidated like any other change.
            None => match tree.get(parent.0) {
                Some(folder) => {
                    let mut absent = self.attr(folder);
                    absent.ino = INodeNo(0);
                    reply.entry(&TTL, &absent, Generation(0))
                }
                None => reply.error(Errno::ENOENT),
            },
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        count("getattr");
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
        count("readdir");
        let tree = self.view.snapshot();
        match listing(&tree, ino.0) {
            Ok(entries) => {
                for (i, (entry, name)) in entries.enumerate().skip(offset as usize) {
                    let kind = match entry.is_dir() {
                        true => FileType::Directory,
                        false => FileType::RegularFile,
                    };
                    if reply.add(INodeNo(entry.ino()), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        };
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        count("readdirplus");
        let tree = self.view.snapshot();
        match listing(&tree, ino.0) {
            Ok(entries) => {
                for (i, (entry, name)) in entries.enumerate().skip(offset as usize) {
                    let attr = self.attr(entry);
                    if reply.add(
                        INodeNo(entry.ino()),
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
        };
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        count("open");
        match self.view.snapshot().get(ino.0).map(|n| n.kind()) {
            Some(NodeKind::File(file)) => {
                let replicas = file.replicas();
                let fh = self.reader.open(&replicas);
                if self.passthrough {
                    if let Some(backing) = self.backing_for(ino.0, &replicas, &reply) {
                        return reply.opened_passthrough(
                            FileHandle(fh),
                            FopenFlags::empty(),
                            &backing.id,
                        );
                    }
                }
                // Content of a version never changes (a new version is a new tree
                // entry), so the kernel may keep its page cache across opens.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Some(NodeKind::Dir(_)) => reply.error(Errno::EISDIR),
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
        count("read");
        let tree: Arc<Tree> = self.view.snapshot();
        let unopened = || Some(tree.get(ino.0)?.file()?.replicas());
        let path = || tree.path_of(ino.0);
        let answer: Answer = Box::new(move |result| match result {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(Errno::from_i32(read_errno(e.kind()))),
        });
        self.reader
            .read(fh.0, &unopened, &path, offset, size, answer);
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
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        count("release");
        let session = self.reader.release(fh.0);
        if self.passthrough {
            self.modes.release(ino.0);
            // The end of a play that left the file whole in the cache: the
            // next open reads a copy.
            if let Some(session) = session {
                self.make_copy_if_cached(session);
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        count("statfs");
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
        count("getxattr");
        let tree = self.view.snapshot();
        let Some(node) = tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if name.to_str() == Some("user.musicfs.pinned") {
            return xattr_reply(self.pinned(&tree, ino.0).as_bytes(), size, reply);
        }
        let Some(file) = node.file() else {
            return reply.error(Errno::ENODATA);
        };
        let file_size = file.size();
        let value = match name.to_str() {
            Some("user.musicfs.origin") => file.first_origin().to_owned(),
            Some("user.musicfs.path") => file.source_path().to_owned(),
            Some("user.musicfs.cached") => {
                let cached = file
                    .replicas()
                    .iter()
                    .map(|r| self.cache.cached_bytes(r))
                    .max()
                    .unwrap_or(0);
                match cached {
                    0 => "no".to_owned(),
                    c if c >= file_size => "yes".to_owned(),
                    c => format!("partial ({c} of {file_size} bytes)"),
                }
            }
            _ => return reply.error(Errno::ENODATA),
        };
        xattr_reply(value.as_bytes(), size, reply);
    }

    /// Requests every program makes are answered quietly, as a read-only
    /// disk answers them (fuser's defaults log a warning for each; a Python
    /// program's `open` asks whether the file is a terminal, so a music
    /// server's scan logged a line a track).
    ///
    /// An ioctl: none applies to these files (a terminal's `TCGETS`
    /// included), as for a plain file on a disk.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        count("ioctl");
        reply.error(Errno::ENOTTY);
    }

    /// `access(2)`: what exists may be read, listed and (folders) entered;
    /// nothing may be written.
    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        count("access");
        if self.view.snapshot().get(ino.0).is_none() {
            return reply.error(Errno::ENOENT);
        }
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }

    /// `SEEK_DATA`/`SEEK_HOLE`: a file here has no holes, and the kernel
    /// answers them itself once told so (it then stops asking).
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        count("lseek");
        reply.error(Errno::ENOSYS);
    }

    /// `poll(2)`: a file is always ready; the kernel says so itself once
    /// told it is not asked (it then stops asking).
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        count("poll");
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        count("listxattr");
        let tree = self.view.snapshot();
        let names: &[&str] = match tree.get(ino.0).map(|n| n.is_dir()) {
            Some(false) => &XATTRS,
            Some(true) => &FOLDER_XATTRS,
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

/// Counts one FUSE request of `op` (see `control::metrics`).
fn count(op: &'static str) {
    metrics::counter!(crate::telemetry::metric_names::FUSE_REQUESTS, "op" => op).increment(1);
}
