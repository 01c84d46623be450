//! The code's shape, as docs/architecture.md "Module map" states it: the top-level modules of
//! `src/` depend on each other in one direction only (no import cycle), and no source file
//! outside the tests grows past the size a reader can hold in mind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a non-test source file may be (issue 20: "about 900 lines").
const MAX_SOURCE_LINES: usize = 900;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of a file under `src/` (`src/engine/txn.rs` -> `engine`); the crate root
/// files (`lib.rs`, `main.rs`) have none.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::<module>` a file names, outside comments.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for target in crate_references(&text) {
            if target != module {
                uses.insert(target);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_accepts_a_chain() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        graph
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_references("use crate::engine::Engine; // crate::server\nx(crate::config::X)"),
        BTreeSet::from(["engine".to_string(), "config".to_string()])
    );
}

#[test]
fn top_level_modules_import_each_other_in_one_direction_only() {
    let graph = module_graph();
    assert!(
        graph.contains_key("engine") && graph.contains_key("commands"),
        "the source tree was found: {graph:?}"
    );
    assert_eq!(find_cycle(&graph), None, "module graph: {graph:#?}");
    // The layering docs/architecture.md describes: the engine knows nothing of commands,
    // connections or metrics, and config knows nothing of the engine.
    for (module, forbidden) in [
        (
            "engine",
            &["commands", "server", "metrics", "ops", "protocol"][..],
        ),
        ("config", &["engine", "commands", "server", "metrics"][..]),
        ("protocol", &["engine", "commands", "server"][..]),
    ] {
        let uses = &graph[module];
        for target in forbidden {
            assert!(!uses.contains(*target), "{module} imports {target}");
        }
    }
}

#[test]
fn no_source_file_outside_the_tests_is_longer_than_the_limit() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["src", "tools", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let too_long: Vec<String> = files
        .iter()
        .filter(|file| {
            // Test modules in files of their own (`foo/tests.rs`) and integration tests.
            !file.ends_with("tests.rs") && !file.components().any(|c| c.as_os_str() == "tests")
        })
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_SOURCE_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(too_long.is_empty(), "split by concern: {too_long:?}");
}
