//! The origin kinds the behaviour suite runs against, each as a fixture: an
//! empty origin started for one test, files put on it and taken away, and a way
//! to make it unreachable and back. A new plugin joins the suite by adding a
//! fixture here and a line to `e2e/behaviour.rs`.

use std::path::{Path, PathBuf};

use crate::nfs_server::NfsServer;
use crate::s3_server::S3Server;
use crate::smb_server::SmbServer;
use crate::ssh_server::SshServer;

/// One origin of some kind, for one test.
pub trait OriginFixture {
    /// Starts an empty origin under `work`, named `name` there.
    fn start(work: &Path, name: &str) -> Self
    where
        Self: Sized;
    /// The plugin library that serves it (`lib<plugin>.so`).
    fn plugin(&self) -> &'static str;
    /// Its `[[origins]]` entry, as `id` at `priority`.
    fn origin(&self, id: &str, priority: i64) -> toml::Table;
    /// Puts `bytes` at `rel`, whole (never half a file visible).
    fn put(&self, rel: &str, bytes: &[u8]);
    /// Takes the file at `rel` away.
    fn remove(&self, rel: &str);
    /// Makes the origin unreachable (its data stays).
    fn go_away(&mut self);
    /// Makes it reachable again.
    fn come_back(&mut self);
}

fn put_whole(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let temp = path.with_extension("partial-upload");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(temp, path).unwrap();
}

/// A folder served by the local plugin; unreachable = renamed away (an unplugged
/// drive).
pub struct LocalFolder {
    root: PathBuf,
    away: PathBuf,
}

impl OriginFixture for LocalFolder {
    fn start(work: &Path, name: &str) -> Self {
        let root = work.join(name);
        std::fs::create_dir_all(&root).unwrap();
        LocalFolder {
            away: work.join(format!("{name}.away")),
            root,
        }
    }

    fn plugin(&self) -> &'static str {
        "musicfs_local"
    }

    fn origin(&self, id: &str, priority: i64) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("id".into(), id.into());
        table.insert("type".into(), "local".into());
        table.insert("priority".into(), priority.into());
        table.insert("path".into(), self.root.display().to_string().into());
        table
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        put_whole(&self.root.join(rel), bytes);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.root.join(rel)).unwrap();
    }

    fn go_away(&mut self) {
        std::fs::rename(&self.root, &self.away).unwrap();
    }

    fn come_back(&mut self) {
        std::fs::rename(&self.away, &self.root).unwrap();
    }
}

/// A real server that serves a folder the tests write to directly, started
/// for one fixture; unreachable = the server stopped.
pub trait FolderServer {
    /// The plugin library that serves it.
    const PLUGIN: &'static str;
    /// Starts a server with an empty folder.
    fn start_empty() -> Self;
    /// Where the origin's files lie on disk.
    fn folder(&self) -> PathBuf;
    /// Its `[[origins]]` entry, as `id`.
    fn origin_entry(&self, id: &str) -> toml::Table;
    /// Stops it (its files stay).
    fn stop(&mut self);
    /// Starts it again.
    fn start_again(&mut self);
}

/// An origin of a [`FolderServer`] of its own.
pub struct Served<S>(S);

impl<S: FolderServer> OriginFixture for Served<S> {
    fn start(_work: &Path, _name: &str) -> Self {
        Served(S::start_empty())
    }

    fn plugin(&self) -> &'static str {
        S::PLUGIN
    }

    fn origin(&self, id: &str, priority: i64) -> toml::Table {
        let mut table = self.0.origin_entry(id);
        table.insert("priority".into(), priority.into());
        table
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        put_whole(&self.0.folder().join(rel), bytes);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.0.folder().join(rel)).unwrap();
    }

    fn go_away(&mut self) {
        self.0.stop();
    }

    fn come_back(&mut self) {
        self.0.start_again();
    }
}

const PREFIX: &str = "library";

/// A bucket prefix on a real `s3s-fs` server.
pub type S3Bucket = Served<S3Server>;

impl FolderServer for S3Server {
    const PLUGIN: &'static str = "musicfs_s3";

    fn start_empty() -> Self {
        S3Server::start()
    }

    fn folder(&self) -> PathBuf {
        self.object_path(PREFIX)
    }

    fn origin_entry(&self, id: &str) -> toml::Table {
        self.origin(id, PREFIX)
    }

    fn stop(&mut self) {
        self.pause();
    }

    fn start_again(&mut self) {
        self.resume();
    }
}

/// A folder served over SFTP by a real `sshd` (stopped = the server and its
/// sessions killed).
pub type SftpServer = Served<SshServer>;

impl FolderServer for SshServer {
    const PLUGIN: &'static str = "musicfs_sftp";

    fn start_empty() -> Self {
        SshServer::start()
    }

    fn folder(&self) -> PathBuf {
        self.library.clone()
    }

    fn origin_entry(&self, id: &str) -> toml::Table {
        self.origin(id)
    }

    fn stop(&mut self) {
        self.pause();
    }

    fn start_again(&mut self) {
        self.resume();
    }
}

/// A folder exported over NFSv3 by a real nfs-ganesha.
pub type NfsExport = Served<NfsServer>;

impl FolderServer for NfsServer {
    const PLUGIN: &'static str = "musicfs_nfs";

    fn start_empty() -> Self {
        NfsServer::start()
    }

    fn folder(&self) -> PathBuf {
        self.library.clone()
    }

    fn origin_entry(&self, id: &str) -> toml::Table {
        self.origin(id, 3)
    }

    fn stop(&mut self) {
        self.pause();
    }

    fn start_again(&mut self) {
        self.resume();
    }
}

/// A folder shared over SMB by a real Samba `smbd`.
pub type SmbShare = Served<SmbServer>;

impl FolderServer for SmbServer {
    const PLUGIN: &'static str = "musicfs_smb";

    fn start_empty() -> Self {
        SmbServer::start()
    }

    fn folder(&self) -> PathBuf {
        self.library.clone()
    }

    fn origin_entry(&self, id: &str) -> toml::Table {
        self.origin(id)
    }

    fn stop(&mut self) {
        self.pause();
    }

    fn start_again(&mut self) {
        self.resume();
    }
}
