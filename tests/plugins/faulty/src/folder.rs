//! The folder mode of the faulty plugin: a plain folder origin whose every call
//! first obeys the fault file.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use origin_api::{
    async_trait, DirEntry, EntryKind, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, WatchHandle,
};

pub(crate) struct FaultyFolder {
    pub(crate) root: PathBuf,
    pub(crate) fault_file: Option<PathBuf>,
}

fn metadata(meta: &std::fs::Metadata) -> Metadata {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if meta.is_dir() {
        Metadata::directory(modified)
    } else if meta.is_file() {
        Metadata::file(meta.len(), modified)
    } else {
        Metadata {
            kind: EntryKind::Other,
            size: 0,
            modified,
            version: None,
        }
    }
}

impl FaultyFolder {
    /// Applies the fault the fault file asks for right now to a call of `op`:
    /// `fail`, `hang` and `slow` (50 ms more) hit every call; `fail-reads`,
    /// `hang-reads` and `slow-reads` only reads. The faults no plugin can
    /// catch, for the process boundary: `abort`, `segv` (the signal a wild
    /// pointer gets), `oom` (allocates and touches memory until allocation
    /// fails) and `block` (sleeps in a blocking call, holding a worker of its
    /// runtime for ever), each also as `…-reads`. And `escape`: the call tries
    /// what a confined plugin may not do (create a file beside its folder,
    /// signal its parent) and fails with what each attempt got.
    async fn fault(&self, op: &str) -> OriginResult<()> {
        let wanted = match &self.fault_file {
            Some(file) => std::fs::read_to_string(file).unwrap_or_default(),
            None => String::new(),
        };
        let wanted = wanted.trim();
        let (fault, only) = match wanted.split_once('-') {
            Some((fault, "reads")) => (fault, Some("read")),
            _ => (wanted, None),
        };
        if only.is_some_and(|only| only != op) {
            return Ok(());
        }
        if fault == "fail" {
            return Err(OriginError::unavailable("injected failure"));
        }
        if fault == "hang" {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
        match fault {
            "escape" => return Err(OriginError::other(self.escape())),
            "abort" => std::process::abort(),
            // SAFETY: raising a signal has no memory effects.
            "segv" => unsafe {
                raise_segv();
            },
            "oom" => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    // `vec![1; n]` writes every byte: real pages, not a promise.
                    held.push(vec![1u8; 64 << 20]);
                }
            }
            "block" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            _ => {}
        }
        if fault == "slow" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl FaultyFolder {
    /// Tries to write a file beside the served folder and to signal the
    /// parent process; says how each went.
    fn escape(&self) -> String {
        let target = self.root.with_file_name("escaped-by-plugin");
        let write = match std::fs::write(&target, b"out") {
            Ok(()) => "written".to_owned(),
            Err(e) => e.to_string(),
        };
        // SAFETY: signal 0 checks permission and sends nothing.
        let signal = match unsafe { kill(getppid(), 0) } {
            0 => "sent".to_owned(),
            _ => std::io::Error::last_os_error().to_string(),
        };
        format!("write: {write}; signal: {signal}")
    }
}

#[async_trait]
impl Origin for FaultyFolder {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        self.fault("stat").await?;
        Ok(metadata(&std::fs::metadata(self.root.join(path))?))
    }

    async fn list(&self, dir: &str, _cursor: Option<&str>, _limit: u32) -> OriginResult<ListPage> {
        self.fault("list").await?;
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(self.root.join(dir))? {
            let entry = entry?;
            if let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) {
                entries.push(DirEntry {
                    name,
                    metadata: metadata(&meta),
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListPage::complete(entries))
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        self.fault("read").await?;
        let file = std::fs::File::open(self.root.join(path))?;
        let size = file.metadata()?.len();
        let mut buf = vec![0u8; (len as u64).min(size.saturating_sub(offset)) as usize];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    async fn health(&self) -> Health {
        match self.fault("health").await {
            Ok(()) => Health::healthy(),
            Err(e) => Health::unhealthy(e.message().to_owned()),
        }
    }

    async fn watch(&self, _sink: EventSink) -> OriginResult<WatchHandle> {
        Ok(WatchHandle::on_stop(|| {}))
    }
}

extern "C" {
    fn raise(signal: i32) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
    fn getppid() -> i32;
}

/// What a wild pointer ends in: SIGSEGV, with its default action (death).
unsafe fn raise_segv() {
    const SIGSEGV: i32 = 11;
    raise(SIGSEGV);
}
