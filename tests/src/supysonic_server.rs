//! A real Subsonic server for the hooks' tests: Supysonic (PyPI
//! `supysonic==0.7.9`, served by `waitress`), which takes a password login
//! only (`p=` or `p=enc:`; it stores a hash, so a salted token cannot be
//! checked: it answers one with error 10, "a required parameter is
//! missing"). Its scanner daemon and its web server run as processes of the
//! test, with a configuration, database and socket of their own; its one
//! folder is the mount, its user `admin` may start scans.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user the server knows, and its password.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "sesame-not-logged";

pub struct SupysonicServer {
    dir: PathBuf,
    daemon: Child,
    server: Child,
    pub port: u16,
}

fn cli(dir: &Path, args: &[&str]) {
    let out = Command::new("supysonic-cli")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("supysonic-cli runs (pip install supysonic==0.7.9 waitress)");
    assert!(
        out.status.success(),
        "supysonic-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SupysonicServer {
    /// Starts Supysonic in `dir` on `port` with `music` (the mount) as its
    /// folder.
    pub fn start_on(dir: &Path, music: &Path, port: u16) -> SupysonicServer {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("supysonic.conf"),
            format!(
                "[base]\ndatabase_uri = sqlite:///{db}\n\
                 [webapp]\ncache_dir = {cache}\n\
                 [daemon]\nsocket = {socket}\nrun_watcher = false\n",
                db = dir.join("supysonic.db").display(),
                cache = dir.join("cache").display(),
                socket = dir.join("daemon.sock").display(),
            ),
        )
        .unwrap();
        cli(dir, &["user", "add", USER, "-p", PASSWORD]);
        cli(dir, &["user", "setroles", "-A", USER]);
        cli(
            dir,
            &["folder", "add", "library", &music.display().to_string()],
        );
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let daemon = Command::new("supysonic-daemon")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log("daemon.log"))
            .stderr(log("daemon.err"))
            .spawn()
            .expect("supysonic-daemon runs");
        let server = Command::new("supysonic-server")
            .args(["-S", "waitress", "-h", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log("server.log"))
            .stderr(log("server.err"))
            .spawn()
            .expect("supysonic-server runs");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || !dir.join("daemon.sock").exists()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "supysonic did not start: {}",
                std::fs::read_to_string(dir.join("server.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        SupysonicServer {
            dir: dir.to_owned(),
            daemon,
            server,
            port,
        }
    }

    /// The server's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `method` of the Subsonic API with `query`, logged in with the
    /// password: the JSON answer's `subsonic-response`.
    pub fn call(&self, method: &str, query: &str) -> serde_json::Value {
        let encoded: String = PASSWORD.bytes().map(|b| format!("{b:02x}")).collect();
        let url = format!(
            "{}/rest/{method}?u={USER}&p=enc:{encoded}&v=1.12.0&c=test&f=json&{query}",
            self.url()
        );
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                &url,
            ])
            .output()
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{method}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        answer["subsonic-response"].clone()
    }

    /// The names of the albums the server lists.
    pub fn albums(&self) -> Vec<String> {
        let answer = self.call("getAlbumList2", "type=alphabeticalByName&size=500");
        answer["albumList2"]["album"]
            .as_array()
            .map(|albums| {
                albums
                    .iter()
                    .filter_map(|a| a["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the server logged (its errors' file).
    pub fn log(&self) -> String {
        ["server.err", "daemon.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for SupysonicServer {
    fn drop(&mut self) {
        for child in [&mut self.server, &mut self.daemon] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
