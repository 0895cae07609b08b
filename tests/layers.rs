//! The crate's modules form layers that point one way: a module may use
//! modules of its own layer or below, never above, and no modules use each
//! other in a circle. Read from the source, so a new `crate::…` path that
//! points up fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` and its layer, bottom first.
const LAYERS: &[(&str, u8)] = &[
    // Foundations every layer may use.
    ("error", 0),
    ("types", 0),
    ("event_view", 0),
    ("layout", 0),
    ("storage", 0),
    ("options", 0),
    ("progress", 0),
    ("validate", 0),
    ("query", 0),
    ("commit", 0),
    ("stream_metadata", 0),
    ("retention", 0),
    ("telemetry", 0),
    ("log", 1),
    ("index", 2),
    ("snapshot", 3),
    ("checkpoint", 3),
    ("subscription", 3),
    ("projection", 3),
    ("verify", 3),
    ("key_store", 3),
    ("sealing", 3),
    ("store", 4),
    // The typed layer, built on the store's API.
    ("codec", 5),
    ("domain_event", 5),
    ("aggregate", 5),
    ("typed", 5),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to (`None` for the root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib").then_some(name)
}

/// The modules `code` names through `crate::`, comments left out.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in code.lines() {
        // Comments (whole lines and trailing ones) name no dependency.
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module-to-module edge of the crate.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let code = std::fs::read_to_string(&file).unwrap();
        let used = used_modules(&code);
        let entry = edges.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|u| *u != module));
    }
    edges
}

/// The edges that point up, as `from -> to` lines.
fn upward(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, tos) in edges {
        for to in tos {
            match (layer(from), layer(to)) {
                (Some(f), Some(t)) if f >= t => {}
                (f, t) => bad.push(format!("{from} ({f:?}) -> {to} ({t:?})")),
            }
        }
    }
    bad
}

/// A circle among the modules, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn every_module_has_a_layer_and_no_edge_points_up() {
    let edges = edges();
    assert!(edges.len() >= LAYERS.len() - 1, "{:?}", edges.keys());
    for module in edges.keys() {
        assert!(layer(module).is_some(), "module '{module}' has no layer");
    }
    let bad = upward(&edges);
    assert!(
        bad.is_empty(),
        "edges pointing up the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_modules_use_each_other_in_a_circle() {
    let edges = edges();
    assert_eq!(circle(&edges), None);
}

#[test]
fn the_checks_catch_an_upward_edge_and_a_circle() {
    // The checks themselves, on made-up edges: the layer test is only worth
    // something if it can fail.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges
        .entry("log".into())
        .or_default()
        .insert("store".into());
    edges
        .entry("store".into())
        .or_default()
        .insert("log".into());
    assert_eq!(upward(&edges), vec!["log (Some(1)) -> store (Some(4))"]);
    assert!(circle(&edges).is_some());
    assert_eq!(
        used_modules("use crate::index::Index; // crate::store\n// crate::typed"),
        BTreeSet::from(["index".to_string()])
    );
}
