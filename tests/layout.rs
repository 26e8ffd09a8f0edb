//! The house rules of `src/`, checked on the source text:
//!
//! - `src/redis/` imports nothing under `src/embedded/`, and `src/embedded/`
//!   nothing under `src/redis/`, directly or through a re-export of `lib.rs`;
//! - no file imports another that imports it back, directly or through
//!   others.
//!
//! A file "imports" another when it names a path (`crate::a::b`,
//! `super::x`, `self::y`, or one of `lib.rs`'s re-exports such as
//! `crate::Store`) that resolves into it. Comments, doc comments and a
//! file's `#[cfg(test)] mod tests` are not counted: a unit test may use
//! anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file's module path: `["embedded", "core"]` for `src/embedded/core/mod.rs`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn mod_path(src: &Path, file: &Path) -> ModPath {
    let rel = file
        .strip_prefix(src)
        .expect("under src/")
        .with_extension("");
    let mut parts: ModPath = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file that counts: no comments, no unit-test module.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path the code names from `crate::`, `super::` or `self::`, as
/// segments relative to the crate root, with `use` groups (`a::{b, c::d}`)
/// expanded one level.
fn named_paths(code: &str, here: &ModPath) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let base = if !starts_word {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), 7))
        } else if rest.starts_with("super::") {
            // `super` of module a::b is a, whether its file is `a/b.rs` or `a/b/mod.rs`.
            let mut p = here.clone();
            p.pop();
            Some((p, 7))
        } else if rest.starts_with("self::") {
            Some((here.clone(), 6))
        } else {
            None
        };
        let Some((mut prefix, skip)) = base else {
            i += 1;
            continue;
        };
        i += skip;
        // Segments up to a `{` group or the end of the path.
        let mut grouped = false;
        loop {
            if i < bytes.len() && bytes[i] == '{' {
                let close = bytes[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(bytes.len(), |p| i + p);
                let group: String = bytes[i + 1..close].iter().collect();
                for item in group.split(',') {
                    let item = item.trim().trim_start_matches('{');
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    if item.is_empty() || item == "self" {
                        continue;
                    }
                    let mut p = prefix.clone();
                    p.extend(item.split("::").map(|s| s.trim().to_owned()));
                    found.push(p);
                }
                i = close + 1;
                grouped = true;
                break;
            }
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let seg: String = bytes[start..i].iter().collect();
            if seg == "super" {
                prefix.pop();
            } else if !seg.is_empty() {
                prefix.push(seg);
            }
            if i + 1 < bytes.len() && bytes[i] == ':' && bytes[i + 1] == ':' {
                i += 2;
                continue;
            }
            break;
        }
        if !grouped {
            found.push(prefix);
        }
    }
    found
}

/// `lib.rs`'s flat re-exports: `Store` -> `["embedded"]`.
fn reexports(lib: &str) -> BTreeMap<String, ModPath> {
    let mut map = BTreeMap::new();
    for stmt in code(lib).split(';') {
        let Some(rest) = stmt
            .trim()
            .rsplit("pub use ")
            .next()
            .filter(|_| stmt.contains("pub use "))
        else {
            continue;
        };
        let rest = rest.trim();
        let (module, names) = match rest.split_once("::{") {
            Some((m, names)) => (m, names.trim_end_matches('}').to_owned()),
            None => match rest.rsplit_once("::") {
                Some((m, name)) => (m, name.to_owned()),
                None => continue,
            },
        };
        let module: ModPath = module.split("::").map(str::to_owned).collect();
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.clone());
            }
        }
    }
    map
}

struct Crate {
    modules: BTreeSet<ModPath>,
    reexports: BTreeMap<String, ModPath>,
}

impl Crate {
    /// The file a path resolves into: the longest prefix that is a module,
    /// or, for a root name, the module `lib.rs` re-exports it from.
    fn resolve(&self, path: &ModPath) -> Option<ModPath> {
        if let [name, ..] = path.as_slice()
            && let Some(module) = self.reexports.get(name)
        {
            return self.resolve(module);
        }
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains(p))
    }
}

fn import_graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let krate = Crate {
        modules: files.iter().map(|f| mod_path(&src, f)).collect(),
        reexports: reexports(&std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs")),
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let here = mod_path(&src, file);
        let text = std::fs::read_to_string(file).expect("a source file");
        let deps: BTreeSet<ModPath> = named_paths(&code(&text), &here)
            .iter()
            .filter_map(|p| krate.resolve(p))
            .filter(|d| *d != here && !d.is_empty())
            .collect();
        graph.insert(here, deps);
    }
    graph
}

fn show(p: &ModPath) -> String {
    if p.is_empty() {
        "lib".into()
    } else {
        p.join("/")
    }
}

#[test]
fn the_two_stores_never_import_each_other() {
    let mut wrong = Vec::new();
    for (file, deps) in import_graph() {
        for dep in deps {
            let (a, b) = (
                file.first().map(String::as_str),
                dep.first().map(String::as_str),
            );
            if matches!(
                (a, b),
                (Some("redis"), Some("embedded")) | (Some("embedded"), Some("redis"))
            ) {
                wrong.push(format!("{} -> {}", show(&file), show(&dep)));
            }
        }
    }
    assert!(wrong.is_empty(), "a store imports the other: {wrong:?}");
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let graph = import_graph();
    // Depth-first search for a back edge; reports one cycle.
    fn visit<'a>(
        node: &'a ModPath,
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<&'a ModPath, u8>,
        stack: &mut Vec<&'a ModPath>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        stack.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            match state.get(dep) {
                Some(1) => {
                    let from = stack.iter().position(|n| *n == dep).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[from..].iter().map(|n| show(n)).collect();
                    cycle.push(show(dep));
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(dep, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            let cycle = visit(node, &graph, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "files import each other: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_checker_sees_an_import_and_a_cycle() {
    // The parser itself: a group import and a `super` path resolve.
    let here: ModPath = vec!["embedded".into(), "core".into(), "read".into()];
    let paths = named_paths(
        "use crate::{keys, embedded::backend::Backend};\nsuper::Core::x()",
        &here,
    );
    let shown: Vec<String> = paths.iter().map(show).collect();
    assert!(shown.contains(&"keys".to_owned()), "{shown:?}");
    assert!(
        shown.contains(&"embedded/backend/Backend".to_owned()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"embedded/core/Core/x".to_owned()),
        "{shown:?}"
    );
    let map = reexports("pub use embedded::{Config, Store};\npub use info::Stats;");
    assert_eq!(map.get("Store"), Some(&vec!["embedded".to_owned()]));
    assert_eq!(map.get("Stats"), Some(&vec!["info".to_owned()]));
}
