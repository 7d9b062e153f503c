//! The tree the mount currently shows, swapped whole when a scan finishes: readers
//! take a cheap snapshot and never wait for a rebuild.

use std::sync::{Arc, RwLock};

use crate::library::tree::Tree;

/// The current tree.
#[derive(Clone)]
pub struct LibraryView {
    current: Arc<RwLock<Arc<Tree>>>,
}

impl LibraryView {
    /// A view showing `tree`.
    pub fn new(tree: Tree) -> Self {
        LibraryView {
            current: Arc::new(RwLock::new(Arc::new(tree))),
        }
    }

    /// The tree as it is now.
    pub fn snapshot(&self) -> Arc<Tree> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shows `tree` from now on.
    pub fn replace(&self, tree: Tree) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tree);
    }
}
