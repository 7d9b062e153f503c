//! `musicfs events --mount` followed in the background: a test reads through the
//! mount, then waits for the event line it expects.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A mount's events (JSON lines), collected as they come; the follower is killed
/// when dropped.
pub struct Events {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Events {
    /// Starts following the mount at `mountpoint`.
    pub fn follow(mountpoint: &Path) -> Events {
        let mut child = Command::new(crate::musicfs_binary())
            .args(["events", "--mount"])
            .arg(mountpoint)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Let the follower connect before the test acts.
        std::thread::sleep(Duration::from_millis(300));
        Events { child, lines }
    }

    /// Waits up to 5 s for a line containing every one of `parts`.
    pub fn wait_for(&self, parts: &[&str]) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.last_with(parts) {
                return line;
            }
            if started.elapsed() > Duration::from_secs(5) {
                panic!(
                    "no event with {parts:?}; saw {:#?}",
                    self.lines.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 30 s for a line containing every one of `then`, coming after
    /// the latest line containing every one of `first` (which must be there).
    pub fn wait_for_after(&self, first: &[&str], then: &[&str]) -> String {
        let started = Instant::now();
        loop {
            {
                let lines = self.lines.lock().unwrap();
                let has = |l: &String, parts: &[&str]| parts.iter().all(|p| l.contains(p));
                let at = lines
                    .iter()
                    .rposition(|l| has(l, first))
                    .unwrap_or_else(|| panic!("no event with {first:?}; saw {lines:#?}"));
                if let Some(line) = lines[at + 1..].iter().find(|l| has(l, then)) {
                    return line.clone();
                }
                if started.elapsed() > Duration::from_secs(30) {
                    panic!("no event with {then:?} after {first:?}; saw {lines:#?}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many lines so far contain every one of `parts`.
    pub fn count_with(&self, parts: &[&str]) -> usize {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Waits up to 5 s for `n` lines containing every one of `parts`.
    pub fn wait_for_count(&self, parts: &[&str], n: usize) {
        let started = Instant::now();
        while self.count_with(parts) < n {
            if started.elapsed() > Duration::from_secs(5) {
                panic!(
                    "fewer than {n} events with {parts:?}; saw {:#?}",
                    self.lines.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The latest line so far containing every one of `parts`.
    pub fn last_with(&self, parts: &[&str]) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
