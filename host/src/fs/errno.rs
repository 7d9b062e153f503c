//! The one place where an origin's error kind becomes an errno for the kernel.
//!
//! Only "not found" and "permission denied" mean something about the path itself.
//! Every other failure (timeout, unreachable origin, bad settings, plugin panic) is
//! the origin's problem, not the file's, and reads as `EIO`: a music player retries or
//! skips the track, and nothing mistakes an offline origin for a deleted file.

use origin_api::ErrorKind;

/// The errno a FUSE reply carries for an origin error of `kind`.
pub fn errno_for(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::PermissionDenied => libc::EACCES,
        // Changed is answered by reading the new version; should it still reach
        // a reader, it is the origin's problem like the rest. Kinds a later
        // origin-api adds are too, until they are given a meaning here.
        _ => libc::EIO,
    }
}

/// The errno a failed read of a file the tree shows carries: as [`errno_for`], but
/// "not found" on an origin is `EIO`, since the tree (until a listing says
/// otherwise) says the file exists.
pub fn read_errno(kind: ErrorKind) -> i32 {
    match errno_for(kind) {
        libc::ENOENT => libc::EIO,
        errno => errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_path_errors_keep_their_meaning() {
        assert_eq!(errno_for(ErrorKind::NotFound), libc::ENOENT);
        assert_eq!(errno_for(ErrorKind::PermissionDenied), libc::EACCES);
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::Unavailable,
            ErrorKind::InvalidConfig,
            ErrorKind::Other,
            ErrorKind::Changed,
        ] {
            assert_eq!(errno_for(kind), libc::EIO, "{kind:?}");
        }
    }
}
