//! A plugin process through its ordinary life: what must not look like a
//! fault does not.

use std::time::Duration;

use musicfs::plugins::process::PluginProcess;
use musicfs_tests::{local_plugin, local_settings, plugin_processes};

/// A reader drops a stream mid-file (a seek, a paused player: the ingest drops
/// streams it no longer needs) and asks nothing more. The process answered
/// nothing after that, which once counted as a call given up: it was killed as
/// stuck after two call deadlines, mid-pause. It must stay up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_is_not_a_stuck_process() {
    let dir = tempfile::tempdir().unwrap();
    // More than the stream's credit, so the plugin process is still waiting
    // to send when the stream is dropped.
    std::fs::write(dir.path().join("long.bin"), vec![7u8; 16 << 20]).unwrap();
    let mut options = plugin_processes();
    // Stuck would be declared after 2 s without an answer.
    options.hang_after = Duration::from_secs(2);
    let process = PluginProcess::start(&local_plugin(), options)
        .await
        .unwrap();
    let origin = process
        .open(local_settings("music", dir.path()))
        .await
        .unwrap();
    {
        let mut stream = origin.read_stream("long.bin", 0, 16 << 20, None);
        let first = stream.next_piece().await.unwrap().unwrap();
        assert!(!first.is_empty());
    }
    // Three times the stuck threshold, with the pings going on: a process
    // taken for stuck would be killed (and restarted) meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let report = process.report();
    assert_eq!(report.restarts, 0, "{report:?}");
    assert!(report.pid.is_some());
    // And it still answers.
    assert!(origin.stat("long.bin").await.is_ok());
    drop(origin);
    process.shutdown().await;
}
