//! A real OpenSSH server on loopback for the SFTP tests: `/usr/sbin/sshd` with a
//! config, host key and authorized_keys of its own in a temp folder, serving
//! SFTP (`internal-sftp`) to the current user, who logs in with a key made for
//! the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::link::Site;

/// A running `sshd`.
pub struct SshServer {
    /// Where it runs.
    pub site: Site,
    pub port: u16,
    /// The folder the tests put the library in (readable by the login).
    pub library: PathBuf,
    /// The client's private key (no passphrase) that the server accepts.
    pub client_key: PathBuf,
    /// Another accepted key, protected by [`PASSPHRASE`].
    pub client_key_with_passphrase: PathBuf,
    /// A key the server does not accept.
    pub stranger_key: PathBuf,
    /// A `known_hosts` file holding the server's host key for `[address]:port`.
    pub known_hosts: PathBuf,
    /// The host key's public half, as `ssh-keygen` wrote it.
    pub host_key_pub: String,
    config: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The passphrase of [`SshServer::client_key_with_passphrase`].
pub const PASSPHRASE: &str = "passphrase-not-for-logs-7f3a";

fn keygen(path: &Path, passphrase: &str) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(made.success(), "ssh-keygen failed");
}

impl SshServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> SshServer {
        Self::start_at(Site::loopback())
    }

    /// Starts a server at `site` (loopback, or behind an emulated link).
    pub fn start_at(site: Site) -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let library = root.join("library");
        std::fs::create_dir_all(&library).unwrap();
        let host_key = root.join("host_key");
        keygen(&host_key, "");
        let client_key = root.join("client_key");
        keygen(&client_key, "");
        let client_key_with_passphrase = root.join("client_key_with_passphrase");
        keygen(&client_key_with_passphrase, PASSPHRASE);
        let stranger_key = root.join("stranger_key");
        keygen(&stranger_key, "");
        let authorized = root.join("authorized_keys");
        let accepted = [
            std::fs::read_to_string(root.join("client_key.pub")).unwrap(),
            std::fs::read_to_string(root.join("client_key_with_passphrase.pub")).unwrap(),
        ];
        std::fs::write(&authorized, accepted.concat()).unwrap();
        let port = site.free_port();
        let addr = site.addr;
        let host_key_pub = std::fs::read_to_string(root.join("host_key.pub")).unwrap();
        let known_hosts = root.join("known_hosts");
        let mut fields = host_key_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(&known_hosts, format!("[{addr}]:{port} {kind} {key}\n")).unwrap();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n",
                host_key.display(),
                root.join("sshd.pid").display(),
                authorized.display(),
            ),
        )
        .unwrap();
        // sshd refuses to start without its privilege separation folder.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut server = SshServer {
            site,
            port,
            library,
            client_key,
            client_key_with_passphrase,
            stranger_key,
            known_hosts,
            host_key_pub,
            config,
            child: None,
            dir,
        };
        server.resume();
        server
    }

    /// Starts the server process again (after [`SshServer::pause`]), same port,
    /// keys and files.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).unwrap();
        let child = self
            .site
            .command("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd runs (apt-get install openssh-server)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect((self.site.addr, self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server as a crash would: the listener and every session
    /// process it started (sshd runs each connection in a child of its own,
    /// which would otherwise go on serving). The files stay.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Stopped first, so that it starts no session while the others die.
            unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
            for pid in descendants(child.id()) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The plugin's settings for this server's library as the current user,
    /// logging in with the test key, polling once a second.
    pub fn settings(&self) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("host".into(), self.site.addr.to_string().into());
        table.insert("port".into(), i64::from(self.port).into());
        table.insert("path".into(), self.library.display().to_string().into());
        let key = self.client_key.display().to_string();
        table.insert("private_key".into(), key.into());
        let known = self.known_hosts.display().to_string();
        table.insert("known_hosts".into(), known.into());
        table.insert("poll_interval_secs".into(), 1i64.into());
        table.insert("request_timeout_secs".into(), 5i64.into());
        table
    }

    /// An `[[origins]]` entry: the SFTP plugin serving the library as `id`.
    pub fn origin(&self, id: &str) -> toml::Table {
        let mut table = self.settings();
        table.insert("id".into(), id.into());
        table.insert("type".into(), "sftp".into());
        table
    }

    /// The host key's SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.dir.path().join("host_key.pub"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        out.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// A scratch file in the server's temp folder.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Files the server's session processes hold open (their fds that are
    /// regular files).
    pub fn open_files(&self) -> usize {
        let Some(child) = &self.child else { return 0 };
        descendants(child.id())
            .into_iter()
            .flat_map(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
            })
            .filter_map(|fd| std::fs::metadata(fd.ok()?.path()).ok())
            .filter(|meta| meta.is_file())
            .count()
    }

    /// Connections the server is serving now (its session processes).
    pub fn sessions(&self) -> usize {
        self.child
            .as_ref()
            .map_or(0, |child| children_of(child.id()).len())
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after `)`.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Every process below `pid`, deepest last.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = children_of(pid);
    let mut i = 0;
    while i < found.len() {
        let below = children_of(found[i]);
        found.extend(below);
        i += 1;
    }
    found
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.pause();
    }
}

/// The conformance suite's fixture for an SFTP origin: the server's library
/// folder written directly, with SFTP's whole-second mtimes declared.
pub struct SftpFixture(pub crate::LocalFixture);

#[async_trait::async_trait]
impl origin_api::testkit::Fixture for SftpFixture {
    async fn write(&self, path: &str, data: &[u8]) -> std::io::Result<()> {
        self.0.write(path, data).await
    }

    async fn write_sparse(&self, path: &str, size: u64, tail: &[u8]) -> std::io::Result<bool> {
        self.0.write_sparse(path, size, tail).await
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        self.0.remove(path).await
    }

    /// SFTP version 3 reports mtimes in whole seconds.
    fn mtime_granularity(&self) -> Duration {
        Duration::from_secs(1)
    }
}
