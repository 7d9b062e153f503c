//! A real OpenSSH server on loopback for the SFTP tests: `/usr/sbin/sshd` with a
//! config, host key and authorized_keys of its own in a temp folder, serving
//! SFTP (`internal-sftp`) to the current user, who logs in with a key made for
//! the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3_server::free_port;

/// A running `sshd`.
pub struct SshServer {
    pub port: u16,
    /// The folder the tests put the library in (readable by the login).
    pub library: PathBuf,
    /// The client's private key (no passphrase) that the server accepts.
    pub client_key: PathBuf,
    /// A `known_hosts` file holding the server's host key for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// The host key's public half, as `ssh-keygen` wrote it.
    pub host_key_pub: String,
    config: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(made.success(), "ssh-keygen failed");
}

impl SshServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let library = root.join("library");
        std::fs::create_dir_all(&library).unwrap();
        let host_key = root.join("host_key");
        keygen(&host_key);
        let client_key = root.join("client_key");
        keygen(&client_key);
        let authorized = root.join("authorized_keys");
        std::fs::copy(root.join("client_key.pub"), &authorized).unwrap();
        let port = free_port();
        let host_key_pub = std::fs::read_to_string(root.join("host_key.pub")).unwrap();
        let known_hosts = root.join("known_hosts");
        let mut fields = host_key_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n")).unwrap();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
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
            port,
            library,
            client_key,
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
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd runs (apt-get install openssh-server)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server process (the files stay).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.pause();
    }
}
