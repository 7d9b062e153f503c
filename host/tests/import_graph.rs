//! The modules of `host/src` import each other in one direction: the graph of
//! `crate::<module>` paths between top-level modules has no circle. Leaves
//! (`telemetry`, `values`, `paths`, `store`) import nothing of the crate; the
//! wiring (`daemon`, `changes`, `control`, `mount`) sits on top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names, comments aside.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let named = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    named.insert(name);
                }
            }
        }
    }
    graph
}

/// A circle through `at`, if the walk from it finds one.
fn circle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut found = path[start..].to_vec();
        found.push(at.to_owned());
        return Some(found);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.to_owned());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(found) = circle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(at.to_owned());
    None
}

#[test]
fn host_modules_import_each_other_in_one_direction() {
    let graph = graph();
    assert!(graph.len() >= 10, "{graph:?}");
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(found) = circle(&graph, module, &mut Vec::new(), &mut done) {
            panic!("a circle of imports: {}\n{graph:#?}", found.join(" -> "));
        }
    }
    for leaf in ["telemetry", "values", "paths", "store"] {
        assert!(
            graph[leaf].is_empty(),
            "{leaf} should import nothing of the crate: {:?}",
            graph[leaf]
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    let found = circle(&graph, "a", &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(found.unwrap(), ["a", "b", "c", "a"]);
}
