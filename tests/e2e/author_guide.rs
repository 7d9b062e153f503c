//! The plugin author guide's example is real: it builds, loads and serves, and the
//! README shows it as it is.

use musicfs_tests::example_library;
use origin_api::host::load_plugin;
use origin_api::Settings;

#[test]
fn the_readme_shows_the_example_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example =
        std::fs::read_to_string(root.join("origin-api/examples/hello_origin.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("origin-api/README.md")).unwrap();
    assert!(
        readme.contains(&example),
        "origin-api/README.md is out of date with the example"
    );
    assert!(
        example.lines().count() < 60,
        "the minimal plugin grew past 60 lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_plugin_loads_and_serves() {
    let plugin = load_plugin(&example_library("hello_origin")).unwrap();
    assert_eq!(plugin.info().kind, "hello");
    let mut table = toml::Table::new();
    table.insert("greeting".into(), "hi there\n".into());
    let origin = plugin
        .open(Settings::new("greetings", table))
        .await
        .unwrap();
    let page = origin.list("", None, 10).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].metadata.size, 9);
    assert_eq!(origin.read("hello.txt", 3, 100).await.unwrap(), b"there\n");
}
