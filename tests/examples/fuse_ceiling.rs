//! The most a FUSE file system can serve on this machine: one read-only file
//! whose reads are answered from memory, mounted with MusicFS's kernel
//! settings (1 MiB reads, 64 background requests, 4 threads). The mount
//! bench reads it beside MusicFS's warm read, so that the figure for a read
//! from the chunk cache has its ceiling next to it.
//!
//! `fuse_ceiling MOUNTPOINT BYTES MODE` serves `MOUNTPOINT/big` until
//! unmounted. MODE `bare` answers each read straight from a pattern in
//! memory: FUSE's own cost. MODE `verify` first does what a read from the
//! chunk cache cannot avoid: the bytes are copied into a buffer of their own
//! (as a read of a pack out of the page cache copies them) and hashed with
//! BLAKE3 (as every chunk is checked against its name), 64 KiB at a time.

use std::ffi::OsStr;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
};

const PATTERN: usize = 1 << 20;
const TTL: Duration = Duration::from_secs(60);

struct Ceiling {
    size: u64,
    verify: bool,
    pattern: Vec<u8>,
}

impl Ceiling {
    fn attr(&self, ino: u64) -> FileAttr {
        let file = ino == 2;
        FileAttr {
            ino: INodeNo(ino),
            size: if file { self.size } else { 0 },
            blocks: if file { self.size.div_ceil(512) } else { 0 },
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if file {
                FileType::RegularFile
            } else {
                FileType::Directory
            },
            perm: if file { 0o444 } else { 0o555 },
            nlink: if file { 1 } else { 2 },
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }
}

impl Filesystem for Ceiling {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "big" {
            reply.entry(&TTL, &self.attr(2), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | 2 => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let end = (offset + size as u64).min(self.size);
        let len = end.saturating_sub(offset) as usize;
        let at = (offset % PATTERN as u64) as usize;
        let len = len.min(PATTERN - at);
        let bytes = &self.pattern[at..at + len];
        if !self.verify {
            reply.data(bytes);
            return;
        }
        let mut out = Vec::with_capacity(len);
        for piece in bytes.chunks(64 << 10) {
            out.extend_from_slice(piece);
            std::hint::black_box(blake3::hash(&out[out.len() - piece.len()..]));
        }
        reply.data(&out);
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if offset == 0 {
            let _ = reply.add(INodeNo(2), 1, FileType::RegularFile, "big");
        }
        reply.ok();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mountpoint, size, mode] = args.as_slice() else {
        eprintln!("usage: fuse_ceiling MOUNTPOINT BYTES bare|verify");
        std::process::exit(2);
    };
    let size: u64 = size.parse().expect("BYTES is a number");
    let pattern = (0..PATTERN)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::RO, MountOption::FSName("ceiling".into())];
    config.n_threads = Some(4);
    let fs = Ceiling {
        size,
        verify: mode == "verify",
        pattern,
    };
    if let Err(e) = fuser::mount(fs, mountpoint, &config) {
        eprintln!("cannot mount {mountpoint}: {e}");
        std::process::exit(1);
    }
}
