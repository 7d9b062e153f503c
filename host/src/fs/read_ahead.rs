//! The kernel's read-ahead for the mount.
//!
//! FUSE offers the daemon 128 KiB of read-ahead at INIT and refuses more, so a
//! player's or scanner's sequential read reaches the daemon as one 128 KiB
//! request after another, each waiting on the last. The mount's backing device
//! info (`/sys/class/bdi/0:N/read_ahead_kb`, N the mount's minor device number)
//! can be raised afterwards; the kernel then asks for whole windows, in
//! requests of up to 1 MiB, several at once. Only root may write it: anyone
//! else keeps the kernel's 128 KiB, which works, just slower.

use std::path::{Path, PathBuf};

/// Where the read-ahead of the file system with device number `dev` is set.
pub fn setting_of(dev: u64) -> PathBuf {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Path::new("/sys/class/bdi").join(format!("{major}:{minor}/read_ahead_kb"))
}

/// Sets the read-ahead of the mount with device number `dev` to `kib`, and says
/// what it is now; an error says why it could not be changed.
pub fn set(dev: u64, kib: u32) -> std::io::Result<u32> {
    let setting = setting_of(dev);
    std::fs::write(&setting, kib.to_string())?;
    read(&setting)
}

fn read(setting: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(setting)?;
    text.trim().parse().map_err(|_| {
        std::io::Error::other(format!("{}: not a number: {text:?}", setting.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_named_by_major_and_minor() {
        let dev = libc::makedev(0, 57);
        assert_eq!(
            setting_of(dev),
            Path::new("/sys/class/bdi/0:57/read_ahead_kb")
        );
    }
}
