//! What an origin says about a path: its kind, size, modification time and version.

use std::time::SystemTime;

/// The kind of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (an object, in a bucket).
    File,
    /// A directory (a common prefix, in a bucket).
    Directory,
    /// Anything else (device, socket, unfollowed link); the host ignores it.
    Other,
}

/// Metadata of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// File, directory or other.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
    /// An opaque version tag (an ETag, an inode generation), if the origin has one.
    pub version: Option<String>,
}

impl Metadata {
    /// Metadata of a regular file.
    pub fn file(size: u64, modified: SystemTime) -> Self {
        Metadata {
            kind: EntryKind::File,
            size,
            modified,
            version: None,
        }
    }

    /// Metadata of a directory.
    pub fn directory(modified: SystemTime) -> Self {
        Metadata {
            kind: EntryKind::Directory,
            size: 0,
            modified,
            version: None,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name within its directory (no `/`).
    pub name: String,
    /// Its metadata.
    pub metadata: Metadata,
}

/// One page of a directory listing. Pass `next_cursor` back to get the next page;
/// `None` means the listing is complete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// At most the requested number of entries, in a stable order.
    pub entries: Vec<DirEntry>,
    /// Where the next page starts, or `None` after the last page.
    pub next_cursor: Option<String>,
}

impl ListPage {
    /// The one and only page of a listing.
    pub fn complete(entries: Vec<DirEntry>) -> Self {
        ListPage {
            entries,
            next_cursor: None,
        }
    }
}
