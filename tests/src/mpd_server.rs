//! A real MPD (Debian's `mpd`) on loopback, its `music_directory` a mount, with
//! `auto_update "no"`: it learns of new files only when told to update.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3_server::free_port;

/// A running `mpd --no-daemon`, killed when dropped.
pub struct MpdServer {
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl MpdServer {
    /// Starts MPD over `music_directory`, keeping its files in `dir`. With no
    /// database yet, MPD walks the whole folder once at start (its own
    /// initial update).
    pub fn start(music_directory: &Path, dir: &Path) -> MpdServer {
        Self::start_on(music_directory, dir, free_port())
    }

    /// [`MpdServer::start`] on `port`.
    pub fn start_on(music_directory: &Path, dir: &Path, port: u16) -> MpdServer {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("mpd.log");
        let config = dir.join("mpd.conf");
        std::fs::write(
            &config,
            format!(
                "music_directory \"{}\"\n\
                 db_file \"{}\"\n\
                 log_file \"{}\"\n\
                 bind_to_address \"127.0.0.1\"\n\
                 port \"{port}\"\n\
                 auto_update \"no\"\n\
                 zeroconf_enabled \"no\"\n\
                 audio_output {{\n  type \"null\"\n  name \"none\"\n}}\n",
                music_directory.display(),
                dir.join("database").display(),
                log.display(),
            ),
        )
        .unwrap();
        let child = Command::new("mpd")
            .arg("--no-daemon")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mpd.stderr")).unwrap())
            .spawn()
            .expect("mpd runs (apt-get install mpd)");
        let mut server = MpdServer { port, child, log };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "mpd exited ({status}):\n{}\n{}",
                    std::fs::read_to_string(dir.join("mpd.stderr")).unwrap_or_default(),
                    server.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// MPD's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one command; returns the answer's lines before `OK`, or MPD's
    /// `ACK` line.
    pub fn command(&self, command: &str) -> Result<Vec<String>, String> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        assert!(line.starts_with("OK MPD "), "not MPD: {line:?}");
        (&stream)
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("MPD closed the connection".into());
            }
            let line = line.trim_end();
            if line == "OK" {
                return Ok(lines);
            }
            if line.starts_with("ACK ") {
                return Err(line.to_owned());
            }
            lines.push(line.to_owned());
        }
    }

    /// The files MPD's database holds (`file: …` of `listall`).
    pub fn files(&self) -> Vec<String> {
        self.command("listall")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| l.strip_prefix("file: ").map(str::to_owned))
            .collect()
    }

    /// Whether MPD is updating its database now.
    pub fn updating(&self) -> bool {
        self.command("status")
            .unwrap_or_default()
            .iter()
            .any(|l| l.starts_with("updating_db:"))
    }
}

impl Drop for MpdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
