//! The top-level modules of `host/src` import one way, each only from those below it in
//! the diagram of DEVELOPERS.md ("Layers"): this test reads the diagram and every
//! `crate::…` path in the sources, and fails on an import that goes against the order
//! (naming it and the line), on a module the diagram does not place, and — with the
//! loop it closes — on two modules that reach each other.
//!
//! It reads text, not the compiler's resolution: `use crate::{a::X, b::Y}` groups and
//! inline paths (`crate::a::f()`) count; comments do not. `super::` never leaves a
//! top-level module in this crate, so it is not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import of module `to` from module `from`, with where it was seen.
#[derive(Debug, Clone)]
struct Edge {
    to: String,
    at: String,
}

/// Compiled for tests only, test data of every layer: it may import any of them.
const TEST_ONLY: &[&str] = &["fixtures"];

/// The layers of DEVELOPERS.md's diagram, top first: the first word of each line of the
/// code block under "## Layers".
fn documented_order() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../DEVELOPERS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let section = text
        .split("\n## Layers\n")
        .nth(1)
        .expect("DEVELOPERS.md has a \"## Layers\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layers section has a diagram in a code block");
    block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_import_goes_down_the_documented_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    let order = documented_order();
    assert!(
        order.len() > 5,
        "the diagram lists too few layers: {order:?}"
    );
    let rank = |m: &str| order.iter().position(|o| o == m);
    let unplaced: Vec<&String> = graph
        .keys()
        .filter(|m| rank(m).is_none() && !TEST_ONLY.contains(&m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules of host/src that the diagram in DEVELOPERS.md (\"Layers\") does not place: \
         {unplaced:?}; add each at its layer"
    );
    let upward: Vec<String> = graph
        .iter()
        .filter(|(from, _)| !TEST_ONLY.contains(&from.as_str()))
        .flat_map(|(from, edges)| {
            edges
                .iter()
                .filter(|e| rank(&e.to).is_some_and(|to| rank(from).is_some_and(|f| to <= f)))
                .map(move |e| format!("{from} -> {}  ({})", e.to, e.at))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports that go up the layers of DEVELOPERS.md (order: {}):\n  {}\n\
         Move what the lower module needs down into it (or into `record`), or split the \
         module that does two jobs.",
        order.join(" > "),
        upward.join("\n  ")
    );
}

#[test]
fn top_level_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(
        graph.len() > 5,
        "found too few modules under {}",
        src.display()
    );

    let into_cli: Vec<String> = graph
        .iter()
        .filter(|(from, _)| from.as_str() != "cli")
        .flat_map(|(_, edges)| edges.iter().filter(|e| e.to == "cli"))
        .map(|e| e.at.clone())
        .collect();
    assert!(
        into_cli.is_empty(),
        "`cli` is the top layer; nothing may import it, but these do:\n  {}",
        into_cli.join("\n  ")
    );

    if let Some(cycle) = find_cycle(&graph) {
        let mut lines = Vec::new();
        for pair in cycle.windows(2) {
            let edge = graph[&pair[0]]
                .iter()
                .find(|e| e.to == pair[1])
                .expect("cycle edges come from the graph");
            lines.push(format!("{} -> {}  ({})", pair[0], pair[1], edge.at));
        }
        panic!(
            "top-level modules of host/src import each other in a cycle: {}\n  {}\n\
             Every import on a cycle:\n  {}\n\
             Move what both need into the lower module, or a leaf both import \
             (DEVELOPERS.md, \"Layers\").",
            cycle.join(" -> "),
            lines.join("\n  "),
            edges_on_cycles(&graph).join("\n  ")
        );
    }
}

/// Every import from one module to another that lies on some cycle, with where it is.
fn edges_on_cycles(graph: &BTreeMap<String, Vec<Edge>>) -> Vec<String> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if seen.insert(node.clone()) {
                stack.extend(graph.get(&node).into_iter().flatten().map(|e| e.to.clone()));
            }
        }
        false
    };
    let mut lines = Vec::new();
    for (from, edges) in graph {
        for edge in edges {
            if reaches(&edge.to, from) {
                lines.push(format!("{from} -> {}  ({})", edge.to, edge.at));
            }
        }
    }
    lines
}

/// The parser itself: a test that cannot fail is no test.
#[test]
fn the_reader_sees_groups_and_inline_paths_but_not_comments() {
    let text = "use crate::{trial::{Verdict, Phase}, guard::Thresholds};\n\
                // crate::cli::Cli in a comment\n\
                let x = crate::report::write(); /* crate::lab */\n\
                macro_rules! m { () => { $crate::tune::X } }\n";
    let found: Vec<String> = imported_modules(text).into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["trial", "guard", "report"]);

    let mut graph: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    let edge = |to: &str| Edge {
        to: to.into(),
        at: String::new(),
    };
    graph.insert("a".into(), vec![edge("b")]);
    graph.insert("b".into(), vec![edge("c")]);
    graph.insert("c".into(), vec![]);
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().push(edge("a"));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

fn import_graph(src: &Path) -> BTreeMap<String, Vec<Edge>> {
    let mut graph: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("walked from src");
        let mut parts = relative.components();
        let first = parts
            .next()
            .expect("non-empty path")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        // `lib.rs` declares the modules and `main.rs` is the binary: both sit above them all.
        if first == "lib.rs" || first == "main.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let edges = graph.entry(module.clone()).or_default();
        for (to, line) in imported_modules(&text) {
            if to != module {
                edges.push(Edge {
                    to,
                    at: format!("{}:{line}", relative.display()),
                });
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// Top-level modules named by `crate::` paths in `text`, with their 1-based line.
fn imported_modules(text: &str) -> Vec<(String, usize)> {
    let code = strip_comments(text);
    let mut found = Vec::new();
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(pos) = rest.find("crate::") {
        let start = offset + pos;
        let is_macro_crate = code[..start].ends_with('$');
        let is_word_part = code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &code[start + "crate::".len()..];
        offset = start + "crate::".len();
        rest = &code[offset..];
        if is_macro_crate || is_word_part {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        if let Some(group) = after.strip_prefix('{') {
            for name in group_heads(group) {
                found.push((name, line));
            }
        } else {
            let name = identifier(after);
            if !name.is_empty() {
                found.push((name.to_string(), line));
            }
        }
    }
    found
}

/// The first identifier of each top-level item of a `{a::b, c::{d, e}, f}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expecting = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expecting = true,
            c if expecting && depth == 0 && (c.is_alphabetic() || c == '_') => {
                let name = identifier(&group[i..]);
                if name != "self" {
                    heads.push(name.to_string());
                }
                expecting = false;
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Blanks `//` and `/* */` comments, keeping newlines so line numbers stay right.
/// String literals in this crate do not contain `//` next to `crate::`, so they are not
/// tracked.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut previous = ' ';
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                }
                if previous == '*' && c == '/' {
                    break;
                }
                previous = c;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A cycle as a list of modules whose first and last are the same, if there is one.
fn find_cycle(graph: &BTreeMap<String, Vec<Edge>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<Edge>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        let targets: BTreeSet<&str> = graph
            .get(node)
            .map(|edges| edges.iter().map(|e| e.to.as_str()).collect())
            .unwrap_or_default();
        for next in targets {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }

    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}
