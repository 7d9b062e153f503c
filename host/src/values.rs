//! Value types every part of the daemon may import: a leaf, importing nothing
//! of the crate.
//!
//! - [`FileVersion`]: one version of one file on one origin. The tree calls it a
//!   [`Replica`] (one copy of a track, where to read it), the cache keys its
//!   manifests by it, the router and failover choose among them.

/// Identifies one version of one file on one origin: the manifest's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileVersion {
    /// The origin's id.
    pub origin: String,
    /// The path on the origin.
    pub path: String,
    /// The file's size.
    pub size: u64,
    /// The file's mtime, ns since the epoch.
    pub mtime_ns: u64,
    /// The origin's version token for it (`Metadata::version`), if it gives one:
    /// reads ask for this version, and a file rewritten with the same size and
    /// mtime is another version.
    pub version: Option<String>,
}

impl FileVersion {
    /// The store key.
    pub fn key(&self) -> String {
        let mut key = format!(
            "{}\0{}\0{}\0{}",
            self.origin, self.path, self.size, self.mtime_ns
        );
        if let Some(version) = &self.version {
            key.push('\0');
            key.push_str(version);
        }
        key
    }
}

/// One copy of a file on one origin: exactly the file version whose manifest
/// caches it.
pub type Replica = FileVersion;
