//! Default locations, `~` in configured paths, and room on the disk.

use std::path::{Path, PathBuf};

/// `~/x` → `$HOME/x`; anything else unchanged.
pub fn expand_tilde(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// `$XDG_CACHE_HOME/musicfs`, else `~/.cache/musicfs`, else `./.musicfs-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("musicfs");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/musicfs"),
        None => PathBuf::from(".musicfs-cache"),
    }
}

/// Free space that a file kept only to save work leaves at least, besides as
/// much again as its own size.
const SPARE_SPACE: u64 = 64 << 20;

/// Whether the disk holding `dir` can take a file of `len` bytes that is kept
/// only to save work (a whole copy, a tree snapshot) and still leave as much
/// again free, and 64 MiB: the chunk cache and the index come first, and such
/// a file must never be what makes their next write fail.
pub fn room_to_spare(dir: &Path, len: u64) -> bool {
    disk_space(dir).is_some_and(|(free, _)| free >= len.saturating_add(len.max(SPARE_SPACE)))
}

/// The bytes free for us on the disk holding `dir`, and its size.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed struct to fill.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    let block = stats.f_frsize as u64;
    Some((
        (stats.f_bavail as u64).saturating_mul(block),
        (stats.f_blocks as u64).saturating_mul(block),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expands_only_at_the_start() {
        std::env::set_var("HOME", "/home/u");
        assert_eq!(
            expand_tilde(Path::new("~/.cache/m")),
            PathBuf::from("/home/u/.cache/m")
        );
        assert_eq!(expand_tilde(Path::new("/a/~/b")), PathBuf::from("/a/~/b"));
    }
}
