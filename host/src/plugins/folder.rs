//! The plugins folder: which files are candidates, what each one is, and the
//! content-hashed copies the host actually loads.
//!
//! Replacing a `.so` in place can crash a process that has it mapped, and `dlopen`
//! returns the already-loaded library for a path (or inode) it has seen. So the host
//! never loads from the plugins folder itself: it copies each file to
//! `<state>/plugins/<blake3>-<name>` and loads the copy. A new version is a new hash,
//! a new path, a fresh `dlopen`.

use std::path::{Path, PathBuf};

use crate::plugins::process::ProcessOptions;
use crate::plugins::running::RunningPlugin;

/// Where the Debian package installs the plugins.
pub const SYSTEM_DIR: &str = "/usr/lib/musicfs/plugins";

/// Where plugins are looked for when no `--plugins` is given:
/// `$MUSICFS_PLUGINS`; else `$XDG_DATA_HOME/musicfs/plugins` (by default
/// `~/.local/share/musicfs/plugins`) if that folder exists; else, for an
/// executable installed under `/usr` (the package's `/usr/bin/musicfs`),
/// [`SYSTEM_DIR`] if it exists; else the folder of the running executable,
/// so that `./target/release/musicfs` finds the plugins built beside it.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MUSICFS_PLUGINS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")));
    if let Some(dir) = data_home
        .map(|data| data.join("musicfs/plugins"))
        .filter(|dir| dir.is_dir())
    {
        return dir;
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    if beside.starts_with("/usr") && Path::new(SYSTEM_DIR).is_dir() {
        return PathBuf::from(SYSTEM_DIR);
    }
    beside
}

/// Whether a file named `name` may be a plugin: named like a shared library
/// (`*.so`), and not hidden (editors and copy tools write hidden temporary
/// files).
fn is_candidate(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(std::env::consts::DLL_SUFFIX)
}

/// The regular files of `dir`, not hidden, sorted.
fn visible_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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

/// The files of `dir` that may be plugins (see `is_candidate`), sorted. Any
/// other file is left alone, quietly: a folder shared with other files (the
/// executable's own, a build folder) is not an error.
pub fn candidate_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = visible_files(dir)?;
    files.retain(|f| {
        f.file_name()
            .is_some_and(|n| is_candidate(&n.to_string_lossy()))
    });
    Ok(files)
}

/// What `musicfs plugins` says of a file.
pub enum Verdict {
    /// It loaded (in a plugin process, as the daemon would run it).
    Loaded {
        info: origin_api::PluginInfo,
        api_version: String,
        rustc_version: String,
    },
    /// Why it did not.
    Rejected(String),
    /// Not named like a shared library: never loaded.
    Skipped,
}

/// The verdict on every file of `dir`, each candidate loaded in a plugin
/// process started as `options` say (so a plugin whose constructor crashes is
/// rejected, not the end of `musicfs plugins`) and stopped again.
pub async fn inspect(
    dir: &Path,
    options: &ProcessOptions,
) -> std::io::Result<Vec<(PathBuf, Verdict)>> {
    let mut verdicts = Vec::new();
    for file in visible_files(dir)? {
        let candidate = file
            .file_name()
            .is_some_and(|n| is_candidate(&n.to_string_lossy()));
        let verdict = if !candidate {
            Verdict::Skipped
        } else {
            match RunningPlugin::start(&file, options).await {
                Ok(plugin) => {
                    let (api_version, rustc_version) = plugin.versions();
                    let info = plugin.info().clone();
                    plugin.shutdown().await;
                    Verdict::Loaded {
                        info,
                        api_version,
                        rustc_version,
                    }
                }
                Err(e) => Verdict::Rejected(e),
            }
        };
        verdicts.push((file, verdict));
    }
    Ok(verdicts)
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
