//! The FUSE device of a mount, held apart from the process that serves it.
//!
//! fuser mounts and answers the kernel's first request (`INIT`) in one step,
//! and a fuser session can only start with that request. A connection whose
//! `INIT` was answered never sends another, so a second process could not
//! serve the same mount. Here the keeper (see `mount::keeper`) mounts by itself
//! ([`mount`]), reads the kernel's `INIT` ([`read_init`]) and keeps it; each
//! process that serves the mount gets it replayed on a socket
//! ([`Handshake`]): its fuser session answers it there, the keeper passes the
//! first answer on to the kernel (and compares later ones with it), and the
//! server then points the session at the real device by `dup2` over the
//! socket's descriptor. To the kernel, one `INIT` was answered once; to
//! fuser, each server started as usual.
//!
//! When a server dies with requests it had read and not answered, the keeper
//! sends `FUSE_NOTIFY_RESEND` ([`resend`], Linux 6.9+): the kernel queues them
//! again for the next server.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The FUSE opcode of `INIT`.
const FUSE_INIT: u32 = 26;
/// `FUSE_NOTIFY_RESEND`.
const FUSE_NOTIFY_RESEND: i32 = 7;
/// Big enough for any request the kernel sends (its minimum is 8 KiB; a
/// write carries up to max_write, and this file system takes none).
const READ_BUFFER: usize = 1 << 20;

/// How the mount is made.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
}

impl MountRequest {
    /// Options both ways of mounting take.
    fn common_options(&self) -> Vec<&'static str> {
        let mut options = Vec::new();
        if self.allow_other {
            options.push("allow_other");
        }
        if self.default_permissions {
            options.push("default_permissions");
        }
        options
    }
}

/// Opens `/dev/fuse` and mounts it read-only at `mountpoint`: with mount(2)
/// as root, else through `fusermount3` (setuid), which hands the descriptor
/// back over a socket.
pub fn mount(mountpoint: &Path, request: &MountRequest) -> io::Result<OwnedFd> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        mount_as_root(mountpoint, request)
    } else {
        mount_with_fusermount(mountpoint, request)
    }
}

fn mount_as_root(mountpoint: &Path, request: &MountRequest) -> io::Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nothing else.
    let device = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut options = vec![
        format!("fd={fd}"),
        "rootmode=40000".to_owned(),
        // SAFETY: getuid and getgid cannot fail.
        format!("user_id={}", unsafe { libc::getuid() }),
        format!("group_id={}", unsafe { libc::getgid() }),
    ];
    options.extend(request.common_options().into_iter().map(str::to_owned));
    let data = CString::new(options.join(",")).expect("no NUL in options");
    let target = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the mountpoint"))?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: valid NUL-terminated strings; the result is checked.
    let mounted = unsafe {
        libc::mount(
            c"musicfs".as_ptr(),
            target.as_ptr(),
            c"fuse.musicfs".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if mounted != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(device)
}

fn mount_with_fusermount(mountpoint: &Path, request: &MountRequest) -> io::Result<OwnedFd> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut options = vec![
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "fsname=musicfs",
        "subtype=musicfs",
    ];
    options.extend(request.common_options());
    if request.allow_root {
        options.push("allow_root");
    }
    let theirs_fd = theirs.as_raw_fd();
    let mut command = std::process::Command::new("fusermount3");
    command
        .arg("-o")
        .arg(options.join(","))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs_fd.to_string());
    // SAFETY: fcntl between fork and exec is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = command
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fusermount3: {e}")))?;
    drop(theirs);
    if !status.success() {
        return Err(io::Error::other(format!("fusermount3 failed ({status})")));
    }
    receive_fd(ours.as_raw_fd())
}

/// The descriptor fusermount3 sent over `socket`.
fn receive_fd(socket: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message.
    let mut control = [0u8; 64];
    // SAFETY: a zeroed msghdr is valid; its buffers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg filled in.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            return Ok(OwnedFd::from_raw_fd(fd));
        }
    }
    Err(io::Error::other("fusermount3 sent no descriptor"))
}

/// Unmounts `mountpoint` now; fails (EBUSY) while files are open there.
pub fn unmount_now(mountpoint: &Path) -> io::Result<()> {
    let target = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the mountpoint"))?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
    }
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "--"])
        .arg(mountpoint)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u failed ({status})"
        )))
    }
}

/// One message read from `fd` (a request from the device, a packet from the
/// handshake socket), into a buffer of `room` bytes.
fn read_message(fd: &OwnedFd, room: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; room];
    loop {
        // SAFETY: reading into a live buffer of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads the kernel's first request, which must be `INIT`.
pub fn read_init(device: &OwnedFd) -> io::Result<Vec<u8>> {
    let request = read_message(device, READ_BUFFER)?;
    let opcode = request
        .get(4..8)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
    match opcode {
        Some(FUSE_INIT) => Ok(request),
        other => Err(io::Error::other(format!(
            "the kernel's first request was not INIT ({other:?})"
        ))),
    }
}

/// Writes `reply` (a server's answer to `INIT`) to the device.
pub fn answer_init(device: &OwnedFd, reply: &[u8]) -> io::Result<()> {
    // SAFETY: writing a live buffer of its length.
    let n = unsafe { libc::write(device.as_raw_fd(), reply.as_ptr().cast(), reply.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to queue again every request a server read and did not
/// answer (`FUSE_NOTIFY_RESEND`).
pub fn resend(device: &OwnedFd) -> io::Result<()> {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&16u32.to_ne_bytes());
    header[4..8].copy_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    answer_init(device, &header)
}

/// The keeper's end of one server's handshake: a socket on which the saved
/// `INIT` is replayed and the server's answer read.
pub struct Handshake {
    pub keeper: OwnedFd,
    pub server: OwnedFd,
}

impl Handshake {
    /// A socket pair whose messages keep their bounds (fuser reads one
    /// request a read).
    pub fn new() -> io::Result<Handshake> {
        let mut fds = [0; 2];
        // SAFETY: socketpair into a 2-element array; the result is checked.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: descriptors just made, each owned once.
        Ok(unsafe {
            Handshake {
                keeper: OwnedFd::from_raw_fd(fds[0]),
                server: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

/// Sends `init` on the keeper's end of a handshake and returns the server's
/// answer.
pub fn replay_on(keeper: &OwnedFd, init: &[u8]) -> io::Result<Vec<u8>> {
    answer_init(keeper, init)?;
    let answer = read_message(keeper, 64 << 10)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server went away before it answered INIT",
        ));
    }
    Ok(answer)
}

/// In the server: points the descriptor fuser's session reads (`session_fd`,
/// the handshake socket) at the real device.
pub fn take_over(session_fd: RawFd, device: &OwnedFd) -> io::Result<()> {
    // SAFETY: dup3 onto a descriptor this process owns (the session's);
    // afterwards it names the device, which is what the session should read.
    // Close-on-exec: no program the daemon starts (a hook, a plugin process)
    // may hold the device open.
    if unsafe { libc::dup3(device.as_raw_fd(), session_fd, libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
