//! A real SMB server on loopback for the SMB tests: Samba's `smbd` serving a
//! temp folder as the read-only share `music`, on a port of its own, with a
//! configuration and a user database of its own (nothing of the machine's
//! Samba is used). It signs every message (`server signing = mandatory`).
//!
//! Samba logs a user in as a Unix account: the tests share one system
//! account, `musicfs-smb`, made on first use (the tests run as root).

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::link::Site;

/// The account the share is served to.
pub const USER: &str = "musicfs-smb";
/// Its SMB password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The share's name.
pub const SHARE: &str = "music";

/// How the server is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// `server smb encrypt = required`: a client that does not encrypt is
    /// refused at sign-in.
    Required,
    /// `server smb encrypt = if_required` (Samba's default): encrypted when
    /// the client asks.
    IfAsked,
    /// `server smb encrypt = off`: the server offers none.
    Off,
}

/// A running `smbd`.
pub struct SmbServer {
    /// Where it runs.
    pub site: Site,
    pub port: u16,
    /// The shared folder, written directly by the tests.
    pub library: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn answers(site: &Site, port: u16) -> bool {
    TcpStream::connect((site.addr, port)).is_ok()
}

/// Makes the tests' system account, once.
fn account() {
    static MADE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if *made {
        return;
    }
    let known = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !known {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .expect("useradd runs");
        assert!(
            status.success(),
            "useradd {USER} failed (the tests run as root)"
        );
    }
    *made = true;
}

fn traversable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl SmbServer {
    /// Starts a server sharing an empty folder, signing, encrypting when asked.
    pub fn start() -> SmbServer {
        SmbServer::start_with(Encryption::IfAsked)
    }

    /// Starts a server sharing an empty folder, with `encryption`.
    pub fn start_with(encryption: Encryption) -> SmbServer {
        Self::start_at(Site::loopback(), encryption)
    }

    /// Starts a server at `site` (loopback, or behind an emulated link)
    /// sharing an empty folder, with `encryption`.
    pub fn start_at(site: Site, encryption: Encryption) -> SmbServer {
        account();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        traversable(root);
        let library = root.join("library");
        std::fs::create_dir_all(&library).unwrap();
        traversable(&library);
        for state in [
            "private", "lock", "state", "cache", "pid", "ncalrpc", "logs",
        ] {
            std::fs::create_dir_all(root.join(state)).unwrap();
        }
        let port = site.free_port();
        // Behind a link, every address of the namespace (Samba finds no
        // interface in a point-to-point TUN device): the link's is its only one.
        let interfaces = if site.is_remote() {
            "bind interfaces only = no"
        } else {
            "interfaces = lo\nbind interfaces only = yes"
        };
        let encrypt = match encryption {
            Encryption::Required => "required",
            Encryption::IfAsked => "if_required",
            Encryption::Off => "off",
        };
        let at = |sub: &str| root.join(sub).display().to_string();
        let config = root.join("smb.conf");
        std::fs::write(
            &config,
            format!(
                "[global]\n\
                 server role = standalone server\n\
                 {interfaces}\n\
                 smb ports = {port}\n\
                 disable netbios = yes\n\
                 private dir = {private}\n\
                 lock directory = {lock}\n\
                 state directory = {state}\n\
                 cache directory = {cache}\n\
                 pid directory = {pid}\n\
                 ncalrpc dir = {ncalrpc}\n\
                 passdb backend = tdbsam:{private}/passdb.tdb\n\
                 log level = 1\n\
                 load printers = no\n\
                 printing = bsd\n\
                 printcap name = /dev/null\n\
                 disable spoolss = yes\n\
                 rpc start on demand helpers = no\n\
                 map to guest = never\n\
                 server signing = mandatory\n\
                 server smb encrypt = {encrypt}\n\
                 [{SHARE}]\n\
                 path = {library}\n\
                 read only = yes\n\
                 [{SHARE}-rw]\n\
                 path = {library}\n\
                 read only = no\n\
                 admin users = {USER}\n",
                private = at("private"),
                lock = at("lock"),
                state = at("state"),
                cache = at("cache"),
                pid = at("pid"),
                ncalrpc = at("ncalrpc"),
                library = library.display(),
            ),
        )
        .unwrap();
        let mut smbpasswd = Command::new("smbpasswd")
            .arg("-c")
            .arg(&config)
            .args(["-s", "-a", USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("smbpasswd runs (apt-get install samba)");
        use std::io::Write;
        let secret = format!("{PASSWORD}\n{PASSWORD}\n");
        smbpasswd
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        // It chatters on stderr about converting the new database: shown
        // only if it fails.
        let out = smbpasswd.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "smbpasswd failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = SmbServer {
            site,
            port,
            library,
            config,
            child: None,
            dir,
        };
        server.resume();
        server
    }

    /// Starts the server again (after [`SmbServer::pause`]): same port, same
    /// files, same user.
    pub fn resume(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("smbd.out")).unwrap();
        let child = self
            .site
            .command("smbd")
            .args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
            .arg(&self.config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("smbd runs (apt-get install samba)");
        self.child = Some(child);
        let begun = Instant::now();
        while !answers(&self.site, self.port) {
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "smbd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as a crash would: smbd and every process it forked
    /// for a client (the files stay).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_forks();
    }

    /// Kills every process started with this server's configuration (smbd
    /// forks one per client, and those outlive their parent).
    fn kill_forks(&self) {
        let config = self.config.display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.contains(&config.as_bytes()) {
                // SAFETY: kill(2) with a pid read from /proc and SIGKILL.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// The plugin's settings for this server's share, polling once a second.
    pub fn settings(&self) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("host".into(), self.site.addr.to_string().into());
        table.insert("port".into(), i64::from(self.port).into());
        table.insert("share".into(), SHARE.into());
        table.insert("user".into(), USER.into());
        table.insert("password".into(), PASSWORD.into());
        table.insert("poll_interval_secs".into(), 1i64.into());
        table.insert("request_timeout_secs".into(), 5i64.into());
        table
    }

    /// An `[[origins]]` entry: the SMB plugin serving the share as `id`.
    pub fn origin(&self, id: &str) -> toml::Table {
        let mut table = self.settings();
        table.insert("id".into(), id.into());
        table.insert("type".into(), "smb".into());
        table
    }

    /// Runs `smbclient` commands on the writable share of the same folder,
    /// as another client of the server would (what it changes, the server
    /// notifies).
    pub fn other_client(&self, commands: &str) {
        let out = Command::new("smbclient")
            .arg(format!("//{}/{SHARE}-rw", self.site.addr))
            .args(["-p", &self.port.to_string()])
            .args(["-U", &format!("{USER}%{PASSWORD}")])
            .args(["-c", commands])
            .output()
            .expect("smbclient runs (apt-get install smbclient)");
        assert!(
            out.status.success(),
            "smbclient {commands}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What smbd printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smbd.out")).unwrap_or_default()
    }
}

impl Drop for SmbServer {
    fn drop(&mut self) {
        self.pause();
    }
}
