//! Checks a mountpoint before mounting, with a message that says what to do.

use std::path::Path;

/// Whether `path` can be mounted on; otherwise the reason and the fix.
pub fn check_mountpoint(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("mountpoint {} is not a directory", path.display())),
        // A dead FUSE mount: ENOTCONN, or ECONNABORTED when its connection
        // ended with requests the server had taken (its keeper was killed).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            return Err(format!(
                "mountpoint {0} is left over from a musicfs that was killed (transport endpoint is not connected); clear it with: fusermount3 -u {0}",
                path.display()
            ))
        }
        Err(e) => return Err(format!("mountpoint {}: {e}", path.display())),
    }
    if is_mounted(path) {
        return Err(format!(
            "{0} is already a mount point; unmount it first with: fusermount3 -u {0}",
            path.display()
        ));
    }
    Ok(())
}

/// Whether something is mounted exactly at `path`, per /proc/self/mounts.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(wanted.as_str()))
}
