//! The tree last shown, kept on disk (`cache_dir/tree.snapshot`), so that a
//! restart shows the library without reading the whole index and laying it
//! out again: at 100,000 tracks that took a second, most of the time to the
//! first `ls`.
//!
//! - **Stamped** with what the tree was built from: the index's tracks stamp
//!   (`Store::tracks_stamp`, which changes with every change to the records,
//!   and differs for an index rebuilt empty) and a hash of the settings that
//!   lay it out (origin ids and priorities, the layout). A snapshot with
//!   another stamp is not used: the tree is built from the index as before.
//! - **Checked.** The payload carries its BLAKE3 hash; a torn or damaged
//!   snapshot is a miss, never a wrong tree, and is written anew; so is one
//!   whose tree breaks the layout's invariants (`Tree::check`).
//! - **Written** after every build, to a temporary file renamed into place: a
//!   crash leaves the old snapshot or the new one. Not synced: a snapshot lost
//!   with the page cache costs one build. Not written where it would take
//!   space the index and chunks may need (`paths::room_to_spare`).

use std::io::Write;
use std::path::Path;

use super::tree::Tree;

/// The file format, first in the file; another number is a miss.
const FORMAT: &[u8; 8] = b"MFTREE04";

/// What a snapshot's stamp is made of.
pub fn stamp(tracks_stamp: u64, settings: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&tracks_stamp.to_le_bytes());
    hasher.update(settings.as_bytes());
    *hasher.finalize().as_bytes()
}

/// Writes `tree`, built from what `stamp` says, to `path`.
pub fn save(path: &Path, tree: &Tree, stamp: &[u8; 32]) -> std::io::Result<()> {
    let payload = super::tree_codec::encode(tree);
    let dir = path.parent().unwrap_or(Path::new("."));
    if !crate::paths::room_to_spare(dir, payload.len() as u64) {
        // The old snapshot goes too: its stamp would not match anyway.
        let _ = std::fs::remove_file(path);
        return Err(std::io::Error::other("too little free space to spare"));
    }
    // Written in pieces, not copied into one buffer first: at 1,000,000
    // tracks the copy was another 158 MB next to the tree and its encoding.
    let part = path.with_extension("part");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&part)?);
    file.write_all(FORMAT)?;
    file.write_all(stamp)?;
    file.write_all(blake3::hash(&payload).as_bytes())?;
    file.write_all(&payload)?;
    file.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&part, path)
}

/// The tree in `path`, if it is there, whole, and built from what `stamp` says.
pub fn load(path: &Path, stamp: &[u8; 32]) -> Option<Tree> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(path).ok()?;
    let read_ms = started.elapsed().as_millis() as u64;
    let (format, rest) = bytes.split_at_checked(FORMAT.len())?;
    let (stored_stamp, rest) = rest.split_at_checked(32)?;
    let (hash, payload) = rest.split_at_checked(32)?;
    if format != FORMAT || stored_stamp != stamp {
        return None;
    }
    // Hashed and read at once, on two threads; what is read is used only if
    // the hash is right. Damaged bytes only fail to read: no count is trusted
    // past the bytes there are.
    let (whole, parsed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| blake3::hash(payload).as_bytes() == hash);
        let parsing = std::time::Instant::now();
        let parsed = super::tree_codec::decode(payload);
        let parse_ms = parsing.elapsed().as_millis() as u64;
        let whole = hashing.join().unwrap_or(false);
        tracing::debug!(
            bytes = payload.len(),
            read_ms,
            parse_ms,
            ms = started.elapsed().as_millis() as u64,
            "tree snapshot read"
        );
        (whole, parsed)
    });
    if !whole {
        tracing::warn!(path = %path.display(), "the tree snapshot is damaged; building the tree from the index");
        return None;
    }
    // Whole, yet from a build that laid trees out otherwise: a miss too.
    parsed.filter(Tree::check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::index::FileRecord;
    use crate::library::inode_book::InodeBook;
    use crate::library::layout::Layout;
    use crate::library::tree_build::build;
    use crate::store::Store;

    fn tree(store: &Store) -> Tree {
        let record = FileRecord {
            version: Some("v1".into()),
            ..FileRecord::tagged("o", "a/x.flac", 10, ("A", "B", "X"))
        };
        let mut book = InodeBook::load(store).unwrap();
        build(
            &[record],
            &|o: &str| (1, o.to_owned()),
            &Layout::default(),
            &mut book,
        )
    }

    #[test]
    fn a_snapshot_comes_back_whole_only_with_its_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let shown = tree(&store);
        let path = dir.path().join("tree.snapshot");
        let stamp = stamp(7, "o=1");
        save(&path, &shown, &stamp).unwrap();

        let loaded = load(&path, &stamp).expect("same stamp");
        let album = loaded
            .lookup(loaded.lookup(1, "A").unwrap().ino(), "B")
            .unwrap();
        let file = loaded.lookup(album.ino(), "X.flac").unwrap();
        assert_eq!(loaded.path_of(file.ino()), "/A/B/X.flac");
        assert_eq!(loaded.node_count(), shown.node_count());
        assert_eq!(loaded.file_count(), 1);
        assert_eq!(file.mtime(), shown.get(file.ino()).unwrap().mtime());

        assert!(
            load(&path, &super::stamp(8, "o=1")).is_none(),
            "the index moved on"
        );
        assert!(
            load(&path, &super::stamp(7, "o=2")).is_none(),
            "other settings"
        );
    }

    #[test]
    fn a_damaged_or_torn_snapshot_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let path = dir.path().join("tree.snapshot");
        let stamp = stamp(1, "");
        save(&path, &tree(&store), &stamp).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&path, &stamp).is_none());
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load(&path, &stamp).is_none());
        std::fs::write(&path, b"MF").unwrap();
        assert!(load(&path, &stamp).is_none());
        assert!(load(&dir.path().join("none"), &stamp).is_none());
    }
}
