//! Default locations, and `~` in configured paths.

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
