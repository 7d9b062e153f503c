//! The 1.x rule, proved: a plugin built against origin-api 1.0 as it was
//! released (a frozen copy, `tests/fixtures/frozen-1.0/`) loads into this host,
//! whose origin-api has since gained methods, and each new method falls back on
//! the ones the plugin has.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use origin_api::host::load_plugin;

/// Builds the frozen plugin once per test binary (its own workspace and lock
/// file, beside the main target folder) and returns the library.
fn frozen_plugin() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let manifest = root.join("fixtures/frozen-1.0/plugin/Cargo.toml");
        let target = musicfs_tests::build_dir().join("../frozen-1.0");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--locked", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .unwrap();
        assert!(built.success(), "cannot build the frozen 1.0 plugin");
        target.join("debug/libmusicfs_frozen.so")
    })
}

#[test]
fn this_host_has_grown_past_the_frozen_interface() {
    // abi_stable's own check accepts only plugins at least as new as the host:
    // it refuses the frozen plugin, which is what makes this test meaningful.
    use origin_api::__private::abi_stable::library::lib_header_from_path;
    let header = lib_header_from_path(frozen_plugin()).unwrap();
    let strict = header.init_root_module::<origin_api::__private::PluginModuleRef>();
    let err = strict
        .err()
        .expect("the frozen plugin passed the one-way check");
    assert!(err.to_string().contains("too many fields"), "{err}");
}

#[tokio::test]
async fn a_plugin_built_against_1_0_loads_and_new_methods_fall_back() {
    let plugin = load_plugin(frozen_plugin()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.api_version(), "1.0.0");
    assert_eq!(plugin.info().kind, "frozen");
    let origin = plugin
        .open(origin_api::Settings::new("frozen", toml::Table::new()))
        .await
        .unwrap();
    let content = b"built against origin-api 1.0.0\n";
    assert_eq!(origin.read("frozen.txt", 0, 100).await.unwrap(), content);
    // read_version came in 1.1: the frozen plugin lacks it, so the default in
    // the trait runs, host side, on the plugin's read.
    assert_eq!(
        origin
            .read_version("frozen.txt", 6, 7, Some("any version"))
            .await
            .unwrap(),
        &content[6..13]
    );
    // read_stream came in 1.2: the host streams through read_version instead.
    let streamed = origin
        .read_stream("frozen.txt", 3, u64::MAX, None)
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed, &content[3..]);
    assert_eq!(
        origin.stat("frozen.txt").await.unwrap().size,
        content.len() as u64
    );
    assert_eq!(origin.list("", None, 10).await.unwrap().entries.len(), 1);
    drop(origin);
    plugin.shutdown();

    // A plugin built against this host's own origin-api loads in the same
    // process after it: the checks of one plugin do not bind the next (they
    // would with abi_stable's process-wide checking globals).
    let current = load_plugin(&musicfs_tests::local_plugin()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(current.api_version(), origin_api::API_VERSION);
}
