//! A real S3 server on loopback for the tests: `s3s-fs`, which checks request
//! signatures, serving a folder. Objects are seeded by writing into that folder
//! (a bucket is a directory, an object a file), which is also how a test makes a
//! sparse object larger than 4 GiB without uploading it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::link::Site;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "musicfs-test-key";
pub const SECRET_KEY: &str = "musicfs-test-secret-do-not-log";
pub const BUCKET: &str = "music";

/// A running `s3s-fs`.
pub struct S3Server {
    /// Where it runs.
    pub site: Site,
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Where the server logs every request (`op: GetObject`, …), if asked to.
    request_log: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// Starts a server with one empty bucket, [`BUCKET`].
    pub fn start() -> S3Server {
        Self::start_logging(None)
    }

    /// [`S3Server::start`], logging every request to `request_log`.
    pub fn start_logging(request_log: Option<&Path>) -> S3Server {
        Self::start_at(Site::loopback(), request_log)
    }

    /// A server at `site` (loopback, or behind an emulated link), logging
    /// every request to `request_log` if given.
    pub fn start_at(site: Site, request_log: Option<&Path>) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut server = S3Server {
            port: site.free_port(),
            site,
            root,
            child: None,
            request_log: request_log.map(Path::to_owned),
            _dir: dir,
        };
        server.resume();
        server
    }

    /// Starts the server process again (after [`S3Server::pause`]), same port and data.
    pub fn resume(&mut self) {
        let child = self
            .site
            .command("s3s-fs")
            .args(["--host", &self.site.addr.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env(
                "RUST_LOG",
                if self.request_log.is_some() {
                    "s3s=debug"
                } else {
                    "error"
                },
            )
            .stdout(self.log_output())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs (cargo install s3s-fs@0.14.1 --features binary --locked)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect((self.site.addr, self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_output(&self) -> Stdio {
        match &self.request_log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                Stdio::from(file)
            }
            None => Stdio::null(),
        }
    }

    /// How many requests of each S3 operation the server has logged so far.
    pub fn request_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        let text = self
            .request_log
            .as_ref()
            .map(std::fs::read_to_string)
            .and_then(Result::ok)
            .unwrap_or_default();
        for line in text.lines() {
            if let Some(at) = line.find("checked access, op: ") {
                let op = line[at + 20..]
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                *counts.entry(op).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many GETs of objects the server has logged so far.
    pub fn gets(&self) -> usize {
        self.request_counts().get("GetObject").copied().unwrap_or(0)
    }

    /// The byte ranges of the object bodies the server sent (`Content-Range` of
    /// every partial response), in the order it logged them.
    pub fn served_ranges(&self) -> Vec<(u64, u64)> {
        let text = self
            .request_log
            .as_ref()
            .map(std::fs::read)
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let mut ranges = Vec::new();
        for line in text.lines() {
            let Some(at) = line.find("\"content-range\": \"bytes ") else {
                continue;
            };
            let rest = &line[at + 24..];
            let span = rest.split('/').next().unwrap_or("");
            if let Some((first, last)) = span.split_once('-') {
                if let (Ok(first), Ok(last)) = (first.parse::<u64>(), last.parse::<u64>()) {
                    ranges.push((first, last + 1));
                }
            }
        }
        ranges
    }

    /// Stops the server process (the data stays).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://ADDRESS:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.site.addr, self.port)
    }

    /// The plugin settings for `prefix` in the bucket, with the right keys.
    pub fn settings(&self, prefix: &str) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("bucket".into(), BUCKET.into());
        table.insert("prefix".into(), prefix.into());
        table.insert("region".into(), "us-east-1".into());
        table.insert("endpoint".into(), self.endpoint().into());
        table.insert("allow_http".into(), true.into());
        table.insert("access_key_id".into(), ACCESS_KEY.into());
        table.insert("secret_access_key".into(), SECRET_KEY.into());
        table.insert("poll_interval_secs".into(), 1i64.into());
        table
    }

    /// An `[[origins]]` entry: the S3 plugin serving `prefix` of the bucket as `id`.
    pub fn origin(&self, id: &str, prefix: &str) -> toml::Table {
        let mut table = self.settings(prefix);
        table.insert("id".into(), id.into());
        table.insert("type".into(), "s3".into());
        table
    }

    /// Where the object `key` of the bucket lives on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

/// Prepares `work` for a [`crate::mounted::Mounted`] over S3: the S3 plugin in
/// `work/plugins/` and `config` in `work/musicfs.toml`. Returns the arguments
/// that name the config.
pub fn mount_args(work: &Path, config: &toml::Table) -> Vec<String> {
    mount_args_for(work, config, "musicfs_s3")
}

/// [`mount_args`] with the plugin `lib<plugin>.so` installed.
pub fn mount_args_for(work: &Path, config: &toml::Table, plugin: &str) -> Vec<String> {
    crate::install_plugin(&work.join("plugins"), plugin);
    let file = work.join("musicfs.toml");
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    vec!["--config".into(), file.display().to_string()]
}

/// A config with `origins` and nothing else.
pub fn origins_config(origins: Vec<toml::Table>) -> toml::Table {
    let mut config = toml::Table::new();
    config.insert(
        "origins".into(),
        toml::Value::Array(origins.into_iter().map(toml::Value::Table).collect()),
    );
    config
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.pause();
    }
}

/// The conformance fixture: objects under `prefix`, seeded through the server's
/// storage folder.
pub struct S3Fixture<'a> {
    pub server: &'a S3Server,
    pub prefix: String,
}

#[async_trait::async_trait]
impl origin_api::testkit::Fixture for S3Fixture<'_> {
    async fn write(&self, path: &str, data: &[u8]) -> std::io::Result<()> {
        let file = self.server.object_path(&format!("{}/{path}", self.prefix));
        std::fs::create_dir_all(file.parent().unwrap())?;
        // Write beside and rename, so the server never serves half an object.
        let temp = file.with_extension("partial-upload");
        std::fs::write(&temp, data)?;
        std::fs::rename(temp, file)
    }

    /// Not here: s3s-fs hashes a whole object for its ETag on every HEAD, GET and
    /// listing, so a 5 GiB object makes each of them take longer than 30 s. The
    /// plugin's offsets are u64 end to end (object_store ranges are `Range<u64>`);
    /// the mount's own >4 GiB test covers the host's side.
    async fn write_sparse(&self, _path: &str, _size: u64, _tail: &[u8]) -> std::io::Result<bool> {
        Ok(false)
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.server.object_path(&format!("{}/{path}", self.prefix)))
    }
}
