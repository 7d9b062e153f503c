//! The form `mount -t fuse.musicfs CONFIG MOUNTPOINT` (and its fstab line) runs:
//! `mount.fuse3` calls `musicfs CONFIG MOUNTPOINT -o OPTIONS` and waits for it to
//! exit, so this form puts the daemon in the background once the mount is up and
//! exits with the outcome.
//!
//! Options mean what they mean to other FUSE file systems where MusicFS has the
//! same thing (`allow_other`, `allow_root`, `default_permissions`), or name a
//! `musicfs mount` flag (`cache_dir=`, `plugins=`, `metrics=`). The generic
//! options `mount` adds on its own (`rw`, `dev`, `suid`, `exec`, …) are accepted
//! and change nothing: the mount is always read-only, without devices, setuid or
//! exec. Any other option is refused by name, so that a typo in fstab fails the
//! mount instead of being ignored.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

/// What `musicfs CONFIG MOUNTPOINT -o OPTIONS` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelperMount {
    /// The config file (fstab's first field).
    pub config: PathBuf,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// `allow_other`: other users may read the mount.
    pub allow_other: bool,
    /// `allow_root`: root may read a mount of another user.
    pub allow_root: bool,
    /// `default_permissions`: the kernel checks file modes.
    pub default_permissions: bool,
    /// `cache_dir=`.
    pub cache_dir: Option<PathBuf>,
    /// `plugins=`.
    pub plugins: Option<PathBuf>,
    /// `metrics=ADDR`.
    pub metrics: Option<std::net::SocketAddr>,
    /// `foreground`: stay attached (for debugging a fstab line).
    pub foreground: bool,
}

/// Options `mount` passes on its own; they change nothing here.
const GENERIC: &[&str] = &[
    "rw",
    "ro",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "sync",
    "async",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "silent",
    "loud",
];

/// Whether `args` (without the program name) are in the helper form: two
/// paths first, not a subcommand.
pub fn is_helper_form(args: &[OsString], subcommands: &[&str]) -> bool {
    match args {
        [source, mountpoint, ..] => {
            let named = |a: &OsString| a.to_str().is_some_and(|s| subcommands.contains(&s));
            let flag = |a: &OsString| a.to_str().is_some_and(|s| s.starts_with('-'));
            !named(source) && !flag(source) && !flag(mountpoint)
        }
        _ => false,
    }
}

/// Reads `CONFIG MOUNTPOINT [-o OPTIONS]...`.
pub fn parse(args: &[OsString]) -> Result<HelperMount, String> {
    let mut rest = args.iter();
    let (Some(config), Some(mountpoint)) = (rest.next(), rest.next()) else {
        return Err("usage: musicfs CONFIG MOUNTPOINT [-o OPTIONS]".into());
    };
    let mut mount = HelperMount {
        config: PathBuf::from(config),
        mountpoint: PathBuf::from(mountpoint),
        ..HelperMount::default()
    };
    while let Some(arg) = rest.next() {
        let options = match arg.to_str() {
            Some("-o") => rest
                .next()
                .and_then(|o| o.to_str())
                .ok_or("-o needs a list of options")?
                .to_owned(),
            Some(o) if o.starts_with("-o") => o[2..].to_owned(),
            // `mount -f` and `-n` reach the helper as flags; neither changes
            // what a FUSE file system does.
            Some("-n" | "-f" | "-v" | "-s") => continue,
            _ => {
                return Err(format!(
                    "unexpected argument {:?} (usage: musicfs CONFIG MOUNTPOINT [-o OPTIONS])",
                    arg
                ))
            }
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            apply(&mut mount, option)?;
        }
    }
    Ok(mount)
}

fn apply(mount: &mut HelperMount, option: &str) -> Result<(), String> {
    let (key, value) = match option.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    };
    let path = |value: Option<&str>| match value {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(format!("option {key} needs a value ({key}=…)")),
    };
    match key {
        "allow_other" => mount.allow_other = true,
        "allow_root" => mount.allow_root = true,
        "default_permissions" => mount.default_permissions = true,
        "foreground" => mount.foreground = true,
        "cache_dir" => mount.cache_dir = Some(path(value)?),
        "plugins" => mount.plugins = Some(path(value)?),
        "metrics" => {
            let addr = path(value)?;
            let addr = addr.to_string_lossy();
            mount.metrics = Some(addr.parse().map_err(|e| {
                format!("option metrics={addr}: {e} (an address such as 127.0.0.1:9464)")
            })?)
        }
        // systemd's and mount's own notes for themselves.
        _ if key.starts_with("x-") || key.starts_with("comment=") => {}
        _ if GENERIC.contains(&key) && value.is_none() => {}
        _ => {
            return Err(format!(
                "unknown mount option `{option}` (MusicFS takes allow_other, allow_root, \
                 default_permissions, cache_dir=, plugins=, metrics=, foreground)"
            ))
        }
    }
    Ok(())
}

/// The parent's end of [`fork_to_background`]: what the daemon said.
pub enum Side {
    /// This is the daemon: report through [`Ready::report`].
    Daemon(Ready),
    /// This is the caller: exit with this outcome.
    Caller(Result<(), String>),
}

/// The daemon's way to tell the waiting caller how the mount went.
pub struct Ready(Option<std::fs::File>);

impl Ready {
    /// No caller waits (foreground).
    pub fn none() -> Ready {
        Ready(None)
    }

    /// Tells the caller; only the first report counts.
    pub fn report(&mut self, outcome: &Result<(), String>) {
        if let Some(mut pipe) = self.0.take() {
            let line = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            };
            // The caller may be gone (killed): nothing to tell then.
            let _ = pipe.write_all(line.as_bytes());
        }
    }
}

/// Splits the process in two before any thread exists: the child becomes the
/// daemon (a session of its own, stdin from /dev/null, stdout and stderr to
/// `log`), the parent waits for its report. A daemon that dies before reporting
/// is a failure.
pub fn fork_to_background(log: &std::path::Path) -> Result<Side, String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open the log {}: {e}", log.display()))?;
    let mut fds = [0; 2];
    // SAFETY: a two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just made and are owned here only.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded here (called before the runtime or any thread is
    // started), so the child may go on running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: plain syscalls on descriptors this process owns.
            unsafe {
                libc::setsid();
                // Not holding the folder it was started in busy.
                libc::chdir(c"/".as_ptr());
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::close(null);
                }
                let log = std::os::fd::AsRawFd::as_raw_fd(&log_file);
                libc::dup2(log, 1);
                libc::dup2(log, 2);
            }
            drop(log_file);
            Ok(Side::Daemon(Ready(Some(std::fs::File::from(write_end)))))
        }
        _child => {
            drop(write_end);
            let mut said = String::new();
            let mut pipe = std::fs::File::from(read_end);
            let _ = pipe.read_to_string(&mut said);
            Ok(Side::Caller(match said.as_str() {
                "ok" => Ok(()),
                "" => Err(format!(
                    "the daemon stopped before mounting (see {})",
                    log.display()
                )),
                error => Err(error.to_owned()),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn what_mount_fuse3_passes_is_read() {
        let mount = parse(&args(
            "/etc/musicfs.toml /mnt/music -o rw,allow_other,cache_dir=/var/cache/musicfs,dev,suid",
        ))
        .unwrap();
        assert_eq!(
            mount,
            HelperMount {
                config: "/etc/musicfs.toml".into(),
                mountpoint: "/mnt/music".into(),
                allow_other: true,
                cache_dir: Some("/var/cache/musicfs".into()),
                ..HelperMount::default()
            }
        );
        let watched = parse(&args("c.toml m -o metrics=127.0.0.1:9464")).unwrap();
        assert_eq!(watched.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        let err = parse(&args("c.toml m -o metrics=localhost")).unwrap_err();
        assert!(err.contains("metrics=localhost"), "{err}");
        let bare = parse(&args("c.toml m")).unwrap();
        assert_eq!((bare.config, bare.allow_other), ("c.toml".into(), false));
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let err = parse(&args("c.toml m -o ro,alow_other")).unwrap_err();
        assert!(err.contains("`alow_other`"), "{err}");
        let err = parse(&args("c.toml m -o cache_dir=")).unwrap_err();
        assert!(err.contains("cache_dir needs a value"), "{err}");
        assert!(parse(&args("c.toml m -o rw=1")).is_err());
        assert!(parse(&args("c.toml m --bogus")).is_err());
        parse(&args("c.toml m -o x-systemd.automount,nofail,_netdev")).unwrap();
    }

    #[test]
    fn the_helper_form_is_told_from_subcommands() {
        let subcommands = ["mount", "status"];
        assert!(is_helper_form(
            &args("/etc/musicfs.toml /mnt/music -o ro"),
            &subcommands
        ));
        assert!(!is_helper_form(&args("mount /mnt/music"), &subcommands));
        assert!(!is_helper_form(&args("--help"), &subcommands));
        assert!(!is_helper_form(&args("a --help"), &subcommands));
        assert!(!is_helper_form(&args("status"), &subcommands));
    }
}
