//! The embedded store (redb) under `cache_dir/index.redb`: the library index, inode
//! numbers, directory mtimes, chunk manifests and which chunks hold tags.
//!
//! Values are small JSON or fixed binary records. Hot-path writes (manifests after a
//! fetch) commit without fsync; [`Store::flush`] makes everything durable and runs
//! after a scan, periodically, and at unmount. A crash can lose recent manifests,
//! never corrupt them: the chunks they named are still verified on every read.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// Tracks by `origin \0 path`: JSON `TrackRecord`.
pub const TRACKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tracks");
/// Inode numbers by virtual path.
pub const INODES: TableDefinition<&str, u64> = TableDefinition::new("inodes");
/// Directory mtimes (ns since the epoch) by virtual path.
pub const DIR_MTIMES: TableDefinition<&str, u64> = TableDefinition::new("dir_mtimes");
/// Directory listing signatures by virtual path (a changed listing gets a new mtime).
pub const DIR_SIGS: TableDefinition<&str, u64> = TableDefinition::new("dir_sigs");
/// Counters: `next_inode`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Chunk manifests by file version key: packed extents.
pub const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
/// Chunks that hold tag heads or tails (evicted last).
pub const TAG_CHUNKS: TableDefinition<&[u8], ()> = TableDefinition::new("tag_chunks");

/// A store error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("index store: {0}")]
pub struct StoreError(String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The open store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db =
            Database::create(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let store = Store { db };
        // Create every table so that readers never meet a missing one.
        store.write(true, |txn| {
            txn.open_table(TRACKS)?;
            txn.open_table(INODES)?;
            txn.open_table(DIR_MTIMES)?;
            txn.open_table(DIR_SIGS)?;
            txn.open_table(META)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(TAG_CHUNKS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `work` in a write transaction; `durable` waits for the disk.
    pub fn write<T>(
        &self,
        durable: bool,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        if !durable {
            txn.set_durability(Durability::None).map_err(err)?;
        }
        let value = work(&txn).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(value)
    }

    /// Runs `work` in a read transaction.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        work(&txn).map_err(err)
    }

    /// Makes every earlier commit durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write(true, |_| Ok(()))
    }

    /// One value of a `&str → &[u8]` table.
    pub fn get_bytes(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(table)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Every entry of a `&str → u64` table.
    pub fn all_u64(
        &self,
        table: TableDefinition<&str, u64>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(table)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value()));
            }
            Ok(out)
        })
    }
}
