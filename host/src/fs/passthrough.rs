//! FUSE passthrough: a file whose every byte is cached is opened on its whole
//! copy (`cache::whole_copies`), and the kernel reads that file by itself,
//! at the speed of a local file, without a READ reaching the daemon.
//!
//! - **When.** Only as root (registering a backing file needs CAP_SYS_ADMIN),
//!   on a kernel that offers it (6.9 and later), and unless `[cache]
//!   passthrough = false`. Otherwise every open is served by the daemon as
//!   before, with the kernel's page cache kept (`FOPEN_KEEP_CACHE`, which
//!   passthrough opens cannot have).
//! - **Copies.** When an open served by the daemon is released and its file
//!   is fully cached and at least 1 MiB, its copy is made in the background
//!   (the end of a first play); the next open uses it. A copy holds one version, so an open stays
//!   on the version it opened, as every open does.
//! - **One mode an inode.** The kernel refuses (ETXTBSY) a passthrough open of
//!   an inode that has opens through the daemon, and the other way round, and
//!   wants every passthrough open of an inode on the same backing file. So an
//!   inode keeps the mode of its first open until its last one is released:
//!   [`OpenModes`] keeps that book. The kernel forgets an open before it sends
//!   us the RELEASE, so the book is never behind in the direction that would
//!   be refused.
//! - **Events.** The daemon does not see passthrough reads: such an open is one
//!   `FileAccessed` event for the whole file, when it is opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How an inode's opens are served.
enum Mode<B> {
    /// By the daemon; this many opens.
    Daemon(usize),
    /// By the kernel from backing file `B`; this many opens.
    Passthrough(Arc<B>, usize),
}

/// The mode each open inode is in, and its backing file when passthrough.
pub struct OpenModes<B> {
    inodes: Mutex<HashMap<u64, Mode<B>>>,
}

impl<B> Default for OpenModes<B> {
    fn default() -> Self {
        OpenModes {
            inodes: Mutex::new(HashMap::new()),
        }
    }
}

impl<B> OpenModes<B> {
    /// Records an open of `ino`: the backing file to pass it through to, or
    /// `None` to serve it from the daemon. `backing` is asked only for an
    /// inode with no opens; it may decline with `None`.
    pub fn open(&self, ino: u64, backing: impl FnOnce() -> Option<B>) -> Option<Arc<B>> {
        let mut inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        match inodes.get_mut(&ino) {
            Some(Mode::Daemon(opens)) => {
                *opens += 1;
                None
            }
            Some(Mode::Passthrough(file, opens)) => {
                *opens += 1;
                Some(file.clone())
            }
            None => match backing() {
                Some(file) => {
                    let file = Arc::new(file);
                    inodes.insert(ino, Mode::Passthrough(file.clone(), 1));
                    Some(file)
                }
                None => {
                    inodes.insert(ino, Mode::Daemon(1));
                    None
                }
            },
        }
    }

    /// Records the release of an open of `ino`; its backing file is let go
    /// with its last open.
    pub fn release(&self, ino: u64) {
        let mut inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        let last = match inodes.get_mut(&ino) {
            Some(Mode::Daemon(opens) | Mode::Passthrough(_, opens)) => {
                *opens = opens.saturating_sub(1);
                *opens == 0
            }
            None => false,
        };
        if last {
            inodes.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inode_keeps_the_mode_of_its_first_open_until_its_last_release() {
        let modes: OpenModes<&str> = OpenModes::default();
        assert!(modes.open(7, || None).is_none(), "no copy: the daemon");
        assert!(
            modes.open(7, || Some("copy")).is_none(),
            "a copy made meanwhile waits until the daemon's opens are gone"
        );
        modes.release(7);
        modes.release(7);
        let first = modes.open(7, || Some("copy")).unwrap();
        let second = modes
            .open(7, || panic!("not asked while the inode is passed through"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second), "one backing file an inode");
        modes.release(7);
        assert_eq!(Arc::strong_count(&first), 3, "still held for the open left");
        modes.release(7);
        assert_eq!(Arc::strong_count(&first), 2, "let go with the last open");
        modes.release(7);
        assert!(modes.open(7, || None).is_none());
    }
}
