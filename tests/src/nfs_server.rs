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

use crate::link::Site;

/// A running `ganesha.nfsd`.
pub struct NfsServer {
    /// Where it runs. Behind an emulated link it serves NFSv4 alone (v3 would
    /// need a portmapper there too).
    pub site: Site,
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
    answers_at(std::net::Ipv4Addr::LOCALHOST, port)
}

fn answers_at(addr: std::net::Ipv4Addr, port: u16) -> bool {
    TcpStream::connect((addr, port)).is_ok()
}

/// Starts `rpcbind` unless a portmapper already answers. It is left running
/// for the other servers of the test binary (and of later ones).
fn portmapper() {
    static RPCBIND: std::sync::Mutex<Option<Child>> = std::sync::Mutex::new(None);
    let mut rpcbind = RPCBIND.lock().unwrap_or_else(|p| p.into_inner());
    if rpcbind.is_some() || answers(111) {
        return;
    }
    let child = Command::new("rpcbind")
        .args(["-f", "-w"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rpcbind runs (apt-get install rpcbind)");
    *rpcbind = Some(child);
    let begun = Instant::now();
    while !answers(111) {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "rpcbind did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl NfsServer {
    /// Starts a server exporting an empty folder.
    pub fn start() -> NfsServer {
        Self::start_at(Site::loopback())
    }

    /// Starts a server at `site` exporting an empty folder: over NFSv3 and v4
    /// on loopback, over v4 alone behind a link.
    pub fn start_at(site: Site) -> NfsServer {
        let protocols = if site.is_remote() {
            "4"
        } else {
            portmapper();
            "3, 4"
        };
        let bind = site.addr;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let library = root.join("library");
        std::fs::create_dir_all(&library).unwrap();
        let recovery = root.join("recovery");
        std::fs::create_dir_all(&recovery).unwrap();
        // Two more exports for the tests of refusals: one no client here may
        // mount, one that needs a client port below 1024.
        let (locked, privileged) = (root.join("locked"), root.join("privileged"));
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::create_dir_all(&privileged).unwrap();
        let (port, mount_port) = (site.free_port(), site.free_port());
        let pseudo = "/music";
        let config = root.join("ganesha.conf");
        std::fs::write(
            &config,
            format!(
                "NFS_CORE_PARAM {{\n  Protocols = {protocols};\n  Bind_addr = {bind};\n  \
                 NFS_Port = {port};\n  MNT_Port = {mount_port};\n  Enable_NLM = false;\n  \
                 Enable_RQUOTA = false;\n  Enable_UDP = false;\n}}\n\
                 NFSV4 {{\n  Graceless = true;\n  RecoveryBackend = fs;\n  \
                 RecoveryRoot = {};\n}}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{\n  Export_Id = 1;\n  Path = {};\n  Pseudo = {pseudo};\n  \
                 Access_Type = RO;\n  Squash = No_Root_Squash;\n  SecType = sys;\n  \
                 Protocols = {protocols};\n  Attr_Expiration_Time = 0;\n  \
                 FSAL {{ Name = VFS; }}\n}}\n\
                 EXPORT {{\n  Export_Id = 2;\n  Path = {locked};\n  Pseudo = /locked;\n  \
                 Access_Type = None;\n  SecType = sys;\n  Protocols = {protocols};\n  \
                 CLIENT {{ Clients = 192.0.2.1; Access_Type = RO; }}\n  \
                 FSAL {{ Name = VFS; }}\n}}\n\
                 EXPORT {{\n  Export_Id = 3;\n  Path = {privileged};\n  Pseudo = /privileged;\n  \
                 Access_Type = RO;\n  Squash = No_Root_Squash;\n  SecType = sys;\n  \
                 Protocols = {protocols};\n  PrivilegedPort = true;\n  \
                 FSAL {{ Name = VFS; }}\n}}\n",
                recovery.display(),
                library.display(),
                locked = locked.display(),
                privileged = privileged.display(),
            ),
        )
        .unwrap();
        let mut server = NfsServer {
            site,
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
        // One server starts at a time: two registering with rpcbind at once
        // can leave one of them hung before it listens.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        let root = self.dir.path();
        let child = self
            .site
            .command("ganesha.nfsd")
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
        let addr = self.site.addr;
        while !(answers_at(addr, self.port)
            && (self.site.is_remote() || answers_at(addr, self.mount_port)))
        {
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

    /// The plugin's settings for this server's export over NFS `version`,
    /// polling once a second.
    pub fn settings(&self, version: u8) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("host".into(), self.site.addr.to_string().into());
        let export = match version {
            3 => self.library.display().to_string(),
            _ => self.pseudo.to_owned(),
        };
        table.insert("export".into(), export.into());
        table.insert("version".into(), i64::from(version).into());
        table.insert("port".into(), i64::from(self.port).into());
        table.insert("mount_port".into(), i64::from(self.mount_port).into());
        table.insert("poll_interval_secs".into(), 1i64.into());
        table.insert("request_timeout_secs".into(), 5i64.into());
        table
    }

    /// An `[[origins]]` entry: the NFS plugin serving the export as `id`.
    pub fn origin(&self, id: &str, version: u8) -> toml::Table {
        let mut table = self.settings(version);
        table.insert("id".into(), id.into());
        table.insert("type".into(), "nfs".into());
        table
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
