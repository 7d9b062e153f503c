//! A plugin that crashes the way no Rust code can catch (issue 28). Before plugins
//! ran in processes of their own, an out-of-tree plugin whose read aborted killed
//! the daemon, and every path of the mount, the local origin's included, then
//! answered ENOTCONN.
//!
//! One mount, two origins: `steady` (the local plugin) and `broken` (the
//! test-only faulty plugin). For each way to die (abort, segfault, memory
//! exhausted under `[plugins] memory_limit_mb`, a blocking call that never
//! returns) the broken origin's read fails within its deadline, the steady
//! origin serves byte-identical bytes it had not cached, the mount never
//! answers ENOTCONN, the tree stays whole, `musicfs status` names the restart
//! and how the process ended, and once the fault is gone the broken origin
//! serves its track again, byte-identical. A track added to the broken origin
//! that its watch never reports shows up after the first restart: a new
//! process's watch is told to look at everything.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use musicfs_tests::mounted::Mounted;

use super::track_of_noise;

/// (fault written to the fault file, what the status's last exit must say)
const FAULTS: [(&str, &str); 4] = [
    ("abort-reads", "SIGABRT"),
    ("segv-reads", "SIGSEGV"),
    ("oom-reads", "memory allocation"),
    ("block", "stopped answering"),
];

fn listing(root: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            all.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    all.sort();
    all
}

/// The whole file, or the error that ended the read.
fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn broken_plugin(mount: &Mounted) -> musicfs::control::status::PluginStatus {
    musicfs_tests::status_of(&mount.mountpoint)
        .plugins
        .into_iter()
        .find(|p| p.kind == "faulty")
        .expect("the faulty plugin in the status")
}

fn origin_health(mount: &Mounted, id: &str) -> String {
    musicfs_tests::status_of(&mount.mountpoint)
        .origins
        .into_iter()
        .find(|o| o.id == id)
        .map(|o| o.health)
        .unwrap_or_default()
}

#[test]
fn a_crashing_plugin_takes_down_only_its_own_origins_and_comes_back() {
    let work = tempfile::tempdir().unwrap();
    let (steady_src, broken_src) = (work.path().join("steady"), work.path().join("broken"));
    for (n, (fault, _)) in FAULTS.iter().enumerate() {
        let n = n as u32 + 1;
        // Noise, so the files are megabytes: most of each is read from its
        // origin, not from the tag chunks the scan cached.
        // Names of their own: files with the same path and size on two
        // origins would be one track with two replicas.
        track_of_noise(
            &steady_src.join(format!("calm-{n}.flac")),
            "Steady",
            "Calm",
            n,
            &format!("Calm {n}"),
        );
        track_of_noise(
            &broken_src.join(format!("crash-{n}.flac")),
            "Broken",
            "Crash",
            n,
            fault,
        );
    }
    let fault = work.path().join("fault");
    let extra = format!(
        "[[origins]]\nid = \"steady\"\ntype = \"local\"\npriority = 1\npath = \"{}\"\n\n\
         [health]\ncheck_interval_secs = 1\ntimeout_ms = 2000\n\n\
         [plugins]\nmemory_limit_mb = 2048\n",
        steady_src.display()
    );
    let args =
        musicfs_tests::faulty_folder_config(work.path(), "broken", &broken_src, &fault, &extra);
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some("Broken/Crash/04 - block.flac"),
    );
    super::wait_for_scans(&mount, 1);
    // A track the broken origin's watch never reports (the faulty plugin's
    // watch sends nothing): only the look at everything that follows a
    // restart can find it.
    track_of_noise(
        &broken_src.join("crash-late.flac"),
        "Broken",
        "Crash",
        9,
        "late",
    );
    let late = mount.path("Broken/Crash/09 - late.flac");
    let mut tree = listing(&mount.mountpoint);

    for (n, (fault_name, how)) in FAULTS.iter().enumerate() {
        let n = n + 1;
        let restarts_before = broken_plugin(&mount).restarts;
        std::fs::write(&fault, fault_name).unwrap();

        // The broken origin's read fails (within its deadline: no hang).
        let broken = mount.path(&format!("Broken/Crash/{n:02} - {fault_name}.flac"));
        let err = match read_all(&broken) {
            Ok(bytes) => panic!(
                "{fault_name}: {} bytes read through a crashing plugin; log:\n{}",
                bytes.len(),
                mount.log()
            ),
            Err(e) => e,
        };
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{fault_name}: {err}");

        // Its process went and was started again, and the status says how.
        mount.wait_until(Duration::from_secs(60), |m| {
            broken_plugin(m).restarts > restarts_before
        });
        let status = broken_plugin(&mount);
        let last = status.last_exit.clone().unwrap_or_default();
        assert!(last.contains(how), "{fault_name}: last exit {last:?}");
        println!("{fault_name}: {last}");

        // Meanwhile the other origin serves bytes it had not cached, exactly.
        let steady = mount.path(&format!("Steady/Calm/{n:02} - Calm {n}.flac"));
        assert_eq!(
            read_all(&steady).unwrap(),
            std::fs::read(steady_src.join(format!("calm-{n}.flac"))).unwrap(),
            "{fault_name}: the steady origin's track"
        );
        // Nothing left the tree (the late track may have joined it).
        let now = listing(&mount.mountpoint);
        let lost: Vec<&String> = tree.iter().filter(|p| !now.contains(p)).collect();
        assert!(lost.is_empty(), "{fault_name}: lost {lost:?}");

        // The fault gone, the broken origin comes back and serves its track.
        std::fs::remove_file(&fault).unwrap();
        mount.wait_until(Duration::from_secs(60), |m| {
            origin_health(m, "broken") == "healthy"
        });
        assert_eq!(
            read_all(&broken).unwrap(),
            std::fs::read(broken_src.join(format!("crash-{n}.flac"))).unwrap(),
            "{fault_name}: the broken origin's track after its restart"
        );
        assert!(mount.alive(), "{fault_name}: the daemon died");
        if n == 1 {
            // The new process's watch was told to look at everything (its
            // tags are read once reads work again).
            mount.wait_until(Duration::from_secs(60), |_| late.exists());
            tree = listing(&mount.mountpoint);
        }
    }
    assert_eq!(listing(&mount.mountpoint), tree);
    let log = mount.stop();
    assert!(log.contains("plugin process of `faulty`"), "{log}");
}
