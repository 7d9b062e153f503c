//! The layout before packs (`chunks/ab/cd/<hex>`, a file per chunk): found at
//! open, each chunk verified and moved into a pack, the files and folders
//! removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::index::Keep;
use super::ChunkStore;
use crate::cache::chunker::ChunkId;

/// Moves chunk files of the layout before packs under `root` into `store`.
pub fn import_legacy(store: &ChunkStore, root: &Path, tags: &HashSet<ChunkId>) {
    let files = legacy_chunk_files(root);
    if files.is_empty() {
        return;
    }
    let mut moved = 0;
    for (id, path) in &files {
        if let Ok(bytes) = std::fs::read(path) {
            let keep = if tags.contains(id) {
                Keep::Tag
            } else {
                Keep::Audio
            };
            if ChunkId::of(&bytes) == *id && store.put(id, &bytes, keep).is_ok() {
                moved += 1;
            }
        }
        let _ = std::fs::remove_file(path);
    }
    let _ = legacy_chunk_files(root);
    tracing::info!(moved, of = files.len(), "chunk files moved into packs");
}

/// Chunk files of the layout before packs: (id, path). Temporary files a
/// crash left are removed, and so are the folders found empty.
fn legacy_chunk_files(root: &Path) -> Vec<(ChunkId, PathBuf)> {
    let mut found = Vec::new();
    let Ok(level1) = std::fs::read_dir(root) else {
        return found;
    };
    for dir1 in level1.flatten() {
        let dir1 = dir1.path();
        if !dir1.is_dir() {
            continue;
        }
        for dir2 in std::fs::read_dir(&dir1).into_iter().flatten().flatten() {
            let dir2 = dir2.path();
            for file in std::fs::read_dir(&dir2).into_iter().flatten().flatten() {
                let path = file.path();
                match path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(ChunkId::from_hex)
                {
                    Some(id) => found.push((id, path)),
                    // A temporary file a crash left.
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir2);
        }
        let _ = std::fs::remove_dir(&dir1);
    }
    found
}
