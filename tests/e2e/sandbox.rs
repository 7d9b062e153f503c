//! What a plugin process may not do (SEMANTICS.md, "Plugins"): the test-only
//! faulty plugin's `escape` fault tries to create a file beside the folder it
//! serves and to signal its parent (the host), from inside a plugin process
//! started as the daemon starts them. Both are refused; with `sandbox = false`
//! both go through, so the refusals are the sandbox's doing.

use std::time::Duration;

use musicfs::plugins::process::PluginProcess;
use musicfs_tests::{plugin_library, plugin_processes};
use origin_api::Settings;

async fn escape(sandbox: bool) -> String {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    let fault = work.path().join("fault");
    std::fs::write(&fault, "escape").unwrap();
    let mut options = plugin_processes();
    options.sandbox = sandbox;
    let process = PluginProcess::start(&plugin_library("musicfs_test_faulty"), options)
        .await
        .unwrap();
    let mut table = toml::Table::new();
    table.insert("path".into(), root.display().to_string().into());
    table.insert("fault_file".into(), fault.display().to_string().into());
    let origin = process.open(Settings::new("jail", table)).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), origin.stat("x"))
        .await
        .unwrap()
        .unwrap_err();
    let escaped = work.path().join("escaped-by-plugin").exists();
    drop(origin);
    process.shutdown().await;
    format!("{}; file exists: {escaped}", err.message())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_process_cannot_write_files_or_signal_the_host() {
    let confined = escape(true).await;
    assert_eq!(
        confined,
        "write: Permission denied (os error 13); signal: Operation not permitted (os error 1); file exists: false"
    );
    let free = escape(false).await;
    assert_eq!(free, "write: written; signal: sent; file exists: true");
}
