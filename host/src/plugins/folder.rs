//! The plugins folder: which files are candidates, what each one is, and the
//! content-hashed copies the host actually loads.
//!
//! Replacing a `.so` in place can crash a process that has it mapped, and `dlopen`
//! returns the already-loaded library for a path (or inode) it has seen. So the host
//! never loads from the plugins folder itself: it copies each file to
//! `<state>/plugins/<blake3>-<name>` and loads the copy. A new version is a new hash,
//! a new path, a fresh `dlopen`.

use std::path::{Path, PathBuf};

use origin_api::host::{load_plugin, LoadError, LoadedPlugin};

/// The files of `dir` that may be plugins: regular files whose names do not start
/// with `.` (editors and copy tools write hidden temporary files), sorted.
pub fn candidate_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The verdict on every candidate file of `dir`, loading each in place (for
/// `musicfs plugins`, which exits right after).
pub fn inspect(dir: &Path) -> std::io::Result<Vec<(PathBuf, Result<LoadedPlugin, LoadError>)>> {
    Ok(candidate_files(dir)?
        .into_iter()
        .map(|file| {
            let verdict = load_plugin(&file);
            (file, verdict)
        })
        .collect())
}

/// The BLAKE3 hash of a file, hex.
pub fn content_hash(file: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(file)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Copies `file` (whose hash is `hash`) into `copies_dir` under a name that changes
/// with its content, atomically, and returns the copy's path.
pub fn hashed_copy(file: &Path, hash: &str, copies_dir: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = copies_dir.join(format!("{}-{name}", &hash[..16]));
    if !copy.exists() {
        std::fs::create_dir_all(copies_dir)?;
        let temp = copies_dir.join(format!(".{}-{name}.tmp", &hash[..16]));
        std::fs::copy(file, &temp)?;
        std::fs::rename(&temp, &copy)?;
    }
    Ok(copy)
}

/// Removes copies left by an earlier run; none of them is mapped by this process.
pub fn clear_copies(copies_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(copies_dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
