//! A real NFS server on loopback for the NFS tests: nfs-ganesha with the VFS
//! backend, serving a temp folder read-only over NFSv3 and NFSv4 on ports of
//! its own (`NFS_Port`, `MNT_Port`). NFSv3 needs a portmapper to start:
//! one `rpcbind` is started for the machine if none answers on port 111
//! (ganesha's registrations then clash between servers, harmlessly: the
//! plugin is given the ports and never asks the portmapper).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3_server::free_port;

/// A running `ganesha.nfsd`.
pub struct NfsServer {
    /// The NFS port (v3 and v4).
    pub port: u16,
    /// The v3 MOUNT port.
    pub mount_port: u16,
    /// The exported folder (v3 export path), written directly by the tests.
    pub library: PathBuf,
    /// The export's NFSv4 pseudo path.
    pub pseudo: &'static str,
    config: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Starts `rpcbind` unless a portmapper already answers.
fn portmapper() {
    static STARTED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    if *started || answers(111) {
        return;
    }
    Command::new("rpcbind")
        .args(["-f", "-w"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rpcbind runs (apt-get install rpcbind)");
    let begun = Instant::now();
    while !answers(111) {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "rpcbind did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    *started = true;
}

impl NfsServer {
    /// Starts a server exporting an empty folder.
    pub fn start() -> NfsServer {
        portmapper();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let library = root.join("library");
        std::fs::create_dir_all(&library).unwrap();
        let recovery = root.join("recovery");
        std::fs::create_dir_all(&recovery).unwrap();
        let (port, mount_port) = (free_port(), free_port());
        let pseudo = "/music";
        let config = root.join("ganesha.conf");
        std::fs::write(
            &config,
            format!(
                "NFS_CORE_PARAM {{\n  Protocols = 3, 4;\n  Bind_addr = 127.0.0.1;\n  \
                 NFS_Port = {port};\n  MNT_Port = {mount_port};\n  Enable_NLM = false;\n  \
                 Enable_RQUOTA = false;\n  Enable_UDP = false;\n}}\n\
                 NFSV4 {{\n  Graceless = true;\n  RecoveryBackend = fs;\n  \
                 RecoveryRoot = {};\n}}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{\n  Export_Id = 1;\n  Path = {};\n  Pseudo = {pseudo};\n  \
                 Access_Type = RO;\n  Squash = No_Root_Squash;\n  SecType = sys;\n  \
                 Protocols = 3, 4;\n  FSAL {{ Name = VFS; }}\n}}\n",
                recovery.display(),
                library.display(),
            ),
        )
        .unwrap();
        let mut server = NfsServer {
            port,
            mount_port,
            library,
            pseudo,
            config,
            child: None,
            dir,
        };
        server.resume();
        server
    }

    /// Starts the server process again (after [`NfsServer::pause`]): same
    /// ports, same files.
    pub fn resume(&mut self) {
        let root = self.dir.path();
        let child = Command::new("ganesha.nfsd")
            .arg("-F")
            .arg("-L")
            .arg(root.join("ganesha.log"))
            .arg("-f")
            .arg(&self.config)
            .arg("-p")
            .arg(root.join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ganesha.nfsd runs (apt-get install nfs-ganesha nfs-ganesha-vfs)");
        self.child = Some(child);
        let begun = Instant::now();
        while !(answers(self.port) && answers(self.mount_port)) {
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "ganesha did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server process as a crash would (the files stay).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What ganesha logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ganesha.log")).unwrap_or_default()
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        self.pause();
    }
}
