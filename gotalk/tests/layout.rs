//! The shape of the crate, checked: no file in `gotalk/src` is over ~700 lines, and the files
//! import each other without circles — but for the one loop every connection library has, a
//! handle and its handlers (`sock` ↔ `handlers`, through the stream types a stream handler
//! takes; h2 has the same one). The crate root (`lib.rs`) is not a module to import from:
//! code names items by their module (`crate::error::Error`), so a re-export never hides a
//! circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 720;

/// The files allowed to form a loop: the handle, its handlers, and the stream ends a stream
/// handler is given (which hold the handle).
const HANDLE_LOOP: &[&str] = &["sock/mod.rs", "handlers.rs", "stream.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file (`sock/reader.rs` → `["sock", "reader"]`, `lib.rs` → `[]`).
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines module `path`, or its closest ancestor that is a file.
fn file_of(path: &[String], known: &BTreeSet<String>) -> String {
    for n in (0..=path.len()).rev() {
        let p = path[..n].join("/");
        if n == 0 {
            return "lib.rs".into();
        }
        for cand in [format!("{p}.rs"), format!("{p}/mod.rs")] {
            if known.contains(&cand) {
                return cand;
            }
        }
    }
    unreachable!()
}

/// Every module path a line of code names: `crate::a::b`, `super::x`, `use crate::{a::X, b}`.
fn paths_in(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![];
    let code = line.split("//").next().unwrap_or_default();
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty())
            .collect()
    };
    for (prefix, base) in [
        ("crate::", vec![]),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            // `super::` inside `crate::a::super`-like text does not occur; skip identifiers
            // that merely end in the prefix (`my_crate::`).
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let mut p = base.clone();
                    p.extend(ident(item.trim()));
                    out.push(p);
                }
                continue;
            }
            let named = ident(rest);
            // `use super::*` in an inline module names the file itself.
            if !named.is_empty() {
                let mut p = base.clone();
                p.extend(named);
                out.push(p);
            }
        }
    }
    out
}

/// The path of a `use` declaration (`pub use a::b;` → `a::b;`), if the line is one.
fn use_path(line: &str) -> Option<&str> {
    let l = line.strip_prefix("pub ").unwrap_or(line);
    let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
    let l = l.strip_prefix("pub(super) ").unwrap_or(l);
    l.strip_prefix("use ")
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    lines: BTreeMap<String, usize>,
    /// Lines that name an item through the crate root, by file.
    via_root: BTreeMap<String, String>,
}

fn graph() -> Graph {
    let root = src();
    let mut all = vec![];
    files(&root, &mut all);
    let rel = |p: &Path| {
        p.strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/")
    };
    let known: BTreeSet<String> = all.iter().map(|p| rel(p)).collect();
    let mut edges = BTreeMap::new();
    let mut lines = BTreeMap::new();
    let mut via_root = BTreeMap::new();
    for p in &all {
        let name = rel(p);
        let text = std::fs::read_to_string(p).unwrap();
        lines.insert(name.clone(), text.lines().count());
        let here = module_of(&name);
        // Child modules, which `use child::…` and `use self::child::…` name relative to here.
        let children: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .collect();
        let mut to = BTreeSet::new();
        for line in text.lines() {
            let t = line.trim_start();
            // A file's unit tests (its inline `mod tests`, always last) are not its imports;
            // and their `super::` is the file itself.
            if t.starts_with("mod tests") {
                break;
            }
            if t.starts_with("//") || t.starts_with("#[doc") {
                continue;
            }
            let mut paths = paths_in(line, &here);
            if let Some(used) = use_path(t) {
                let used = used.strip_prefix("self::").unwrap_or(used);
                let first = used.split("::").next().unwrap_or_default();
                if children.iter().any(|c| c == first) {
                    let mut p = here.clone();
                    p.extend(
                        used.split("::")
                            .map(|seg| {
                                seg.chars()
                                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                                    .collect::<String>()
                            })
                            .take_while(|seg| !seg.is_empty()),
                    );
                    paths.push(p);
                }
            }
            for path in paths {
                let f = file_of(&path, &known);
                if f == "lib.rs" {
                    via_root
                        .entry(name.clone())
                        .or_insert_with(|| line.trim().to_owned());
                }
                if f != name {
                    to.insert(f);
                }
            }
        }
        edges.insert(name, to);
    }
    Graph {
        edges,
        lines,
        via_root,
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = BTreeSet::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                c.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        next: 0,
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_file_is_over_700_lines() {
    let g = graph();
    let long: Vec<_> = g.lines.iter().filter(|(_, n)| **n > MAX_LINES).collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_import_circles_but_the_handle_and_its_handlers() {
    let g = graph();
    // lib.rs declares and re-exports every module: it is the root, not a node of the graph.
    let mut edges = g.edges.clone();
    edges.remove("lib.rs");
    let mut into_root = g.via_root.clone();
    into_root.remove("lib.rs");
    assert!(
        into_root.is_empty(),
        "these files import through the crate root (crate::Item) instead of the item's module: {into_root:?}"
    );
    let allowed: BTreeSet<String> = HANDLE_LOOP.iter().map(|s| (*s).to_owned()).collect();
    let found = circles(&edges);
    // The handle/handlers loop is there (so the parser does see the crate's imports).
    assert!(
        found
            .iter()
            .any(|c| c.contains("sock/mod.rs") && c.contains("handlers.rs")),
        "the sock/handlers loop was not found: {found:?}"
    );
    for c in found {
        assert!(
            c.is_subset(&allowed),
            "import circle: {c:?} (allowed: only within {allowed:?})"
        );
    }
}

#[test]
fn the_checker_sees_circles() {
    // A test that cannot fail is no test: the same check on a graph with a circle fails.
    let mut g = BTreeMap::new();
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    g.insert("a.rs".to_owned(), set(&["b.rs"]));
    g.insert("b.rs".to_owned(), set(&["c.rs"]));
    g.insert("c.rs".to_owned(), set(&["a.rs"]));
    g.insert("d.rs".to_owned(), set(&["a.rs"]));
    assert_eq!(circles(&g), vec![set(&["a.rs", "b.rs", "c.rs"])]);
    let here = module_of("sock/reader.rs");
    assert_eq!(
        paths_in("use super::buffers::{read_more, Spares};", &here),
        vec![vec!["sock".to_owned(), "buffers".to_owned()]]
    );
    assert_eq!(
        paths_in("use crate::{error::Error, frame};", &here),
        vec![
            vec!["error".to_owned(), "Error".to_owned()],
            vec!["frame".to_owned()]
        ]
    );
}
