//! The origin kinds the behaviour suite runs against, each as a fixture: an
//! empty origin started for one test, files put on it and taken away, and a way
//! to make it unreachable and back. A new plugin joins the suite by adding a
//! fixture here and a line to `e2e/behaviour.rs`.

use std::path::{Path, PathBuf};

use crate::nfs_server::NfsServer;
use crate::s3_server::S3Server;
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

/// A bucket prefix on a real `s3s-fs` server of its own; unreachable = the
/// server stopped.
pub struct S3Bucket {
    server: S3Server,
}

const PREFIX: &str = "library";

impl OriginFixture for S3Bucket {
    fn start(_work: &Path, _name: &str) -> Self {
        S3Bucket {
            server: S3Server::start(),
        }
    }

    fn plugin(&self) -> &'static str {
        "musicfs_s3"
    }

    fn origin(&self, id: &str, priority: i64) -> toml::Table {
        let mut table = self.server.origin(id, PREFIX);
        table.insert("priority".into(), priority.into());
        table
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        put_whole(&self.server.object_path(&format!("{PREFIX}/{rel}")), bytes);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.server.object_path(&format!("{PREFIX}/{rel}"))).unwrap();
    }

    fn go_away(&mut self) {
        self.server.pause();
    }

    fn come_back(&mut self) {
        self.server.resume();
    }
}

/// A folder served over SFTP by a real `sshd` of its own; unreachable = the
/// server and its sessions killed.
pub struct SftpServer {
    server: SshServer,
}

impl OriginFixture for SftpServer {
    fn start(_work: &Path, _name: &str) -> Self {
        SftpServer {
            server: SshServer::start(),
        }
    }

    fn plugin(&self) -> &'static str {
        "musicfs_sftp"
    }

    fn origin(&self, id: &str, priority: i64) -> toml::Table {
        let mut table = self.server.origin(id);
        table.insert("priority".into(), priority.into());
        table
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        put_whole(&self.server.library.join(rel), bytes);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.server.library.join(rel)).unwrap();
    }

    fn go_away(&mut self) {
        self.server.pause();
    }

    fn come_back(&mut self) {
        self.server.resume();
    }
}

/// A folder exported over NFSv3 by a real nfs-ganesha of its own;
/// unreachable = the server killed.
pub struct NfsExport {
    server: NfsServer,
}

impl OriginFixture for NfsExport {
    fn start(_work: &Path, _name: &str) -> Self {
        NfsExport {
            server: NfsServer::start(),
        }
    }

    fn plugin(&self) -> &'static str {
        "musicfs_nfs"
    }

    fn origin(&self, id: &str, priority: i64) -> toml::Table {
        let mut table = self.server.origin(id, 3);
        table.insert("priority".into(), priority.into());
        table
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        put_whole(&self.server.library.join(rel), bytes);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.server.library.join(rel)).unwrap();
    }

    fn go_away(&mut self) {
        self.server.pause();
    }

    fn come_back(&mut self) {
        self.server.resume();
    }
}
