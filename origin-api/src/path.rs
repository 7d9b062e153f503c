//! Origin paths: relative, `/`-separated, no leading slash; the root is `""`.
//!
//! Every path that enters a plugin through the adapter is checked here first, so a
//! plugin never sees `..`, an absolute path or a NUL, whatever the host asks.

use crate::{OriginError, OriginResult};

/// Checks that `path` is a clean relative origin path.
pub fn check_relative_path(path: &str) -> OriginResult<()> {
    if path.is_empty() {
        return Ok(());
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(bad_path(
            path,
            "must be relative, without a leading or trailing `/`",
        ));
    }
    if path.contains('\0') {
        return Err(bad_path(path, "contains NUL"));
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(bad_path(path, "has an empty, `.` or `..` component"));
        }
    }
    Ok(())
}

/// Joins a directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn bad_path(path: &str, why: &str) -> OriginError {
    OriginError::not_found(format!("invalid origin path {path:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_clean_paths_and_refuses_escapes() {
        assert!(check_relative_path("").is_ok());
        assert!(check_relative_path("a/b c/ü.flac").is_ok());
        for bad in ["/etc", "a/../b", "..", "a//b", "a/", "./a", "a\0b"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn join_handles_root() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
    }
}
