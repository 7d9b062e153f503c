//! Telling the kernel what to forget when the tree changes (fuser's notifier):
//! the entries and inodes [`crate::library::tree_diff`] found changed between two
//! trees, so `ls` and `cat` see the change at once.

use crate::library::tree_diff::Invalidation;

/// Tells the kernel what to forget between two trees.
pub fn notify_kernel(notifier: &fuser::Notifier, changes: &[Invalidation]) {
    for change in changes {
        let result = match change {
            Invalidation::Inode(ino) => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
            Invalidation::Entry { parent, name } => {
                notifier.inval_entry(fuser::INodeNo(*parent), std::ffi::OsStr::new(name))
            }
        };
        // ENOENT: the kernel had nothing cached for it, which is fine.
        if let Err(e) = result {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::debug!(?change, "kernel cache invalidation failed: {e}");
            }
        }
    }
}
