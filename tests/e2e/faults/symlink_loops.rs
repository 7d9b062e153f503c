//! Symlinks that lead back up the tree (issue 9, case 7). Before the fix a link to
//! a parent folder was followed 40 levels deep (41 copies of each track) until
//! ELOOP, which then failed the listing and marked the origin unhealthy.

use std::os::unix::fs::symlink;

use super::track;

#[test]
fn links_back_up_the_tree_are_left_out() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    track(&source.join("a/x.flac"), "Loop", "Back", 1, "X");
    track(&source.join("a/y.flac"), "Loop", "Back", 2, "Y");
    symlink("..", source.join("a/up")).unwrap();
    symlink(".", source.join("a/self")).unwrap();
    // Two folders linking to each other: a loop only through the walk's path.
    // c holds a track: through b's link it is found once more (a link inside the
    // root is followed), through the loop back never again.
    std::fs::create_dir_all(source.join("b")).unwrap();
    track(&source.join("c/z.flac"), "Loop", "Back", 3, "Z");
    symlink("../c", source.join("b/to-c")).unwrap();
    symlink("../b", source.join("c/to-b")).unwrap();

    let plugins = work.path().join("plugins");
    musicfs_tests::install_plugin(&plugins, "musicfs_local");
    let origin = format!("local:{}", source.display());
    let (ok, printed) = musicfs_tests::scan(&plugins, &work.path().join("cache"), &origin);
    assert!(ok, "{printed}");
    assert!(printed.contains(", 4 tracks in the library"), "{printed}");
    assert!(
        !printed.contains("not listed") && !printed.contains("not scanned"),
        "{printed}"
    );
}
