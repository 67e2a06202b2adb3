//! The import rules, checked by reading the `crate::` paths in the sources.
//!
//! - **engine**: every module imports only modules earlier in the pipeline
//!   order that `docs/ARCHITECTURE.md` states ([`ENGINE`]); nothing imports
//!   back up, and so there is no circle.
//! - **endpoint**: the same, in its own order ([`ENDPOINT`]).
//! - **cli**: no import circle between its modules.
//!
//! A path is `crate::name...` in code (comments are skipped), including the
//! `crate::{a, b::c}` form. A name that is not a module (`crate::Error`) is
//! resolved through the crate root's `pub use module::{...}` lines; an item
//! defined in the crate root itself counts as the root, which no module may
//! import (the root imports every module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The engine's modules in pipeline order, lowest first. A module may import
/// only from groups before its own.
const ENGINE: &[&[&str]] = &[
    // Beside the pipeline: used by every stage, using none.
    &["clock", "timestamp", "stats", "prefetch"],
    &["config"],
    &["error"],
    &["format"],
    &["sample", "ring", "redact"],
    &["io"],
    &["spool"],
    &["segment"],
    &["writer"],
    &["recover"],
    &["watermark"],
    &["upload"],
    &["engine"],
];

/// The endpoint's modules, lowest first.
const ENDPOINT: &[&[&str]] = &[
    &["settings", "sigv4", "http"],
    &["state", "eventstream"],
    &["upstream", "shadow"],
    &["stream"],
    &["invoke", "admin"],
    &["front"],
];

/// One `crate::` reference: the file and line it is on, and the module it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

/// The workspace root. The directory is read at run time (cargo sets
/// `CARGO_MANIFEST_DIR` for tests): a test binary reused from a shared
/// target directory may have been compiled in another checkout.
fn workspace() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().expect("workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code without comment lines (`//`, `//!`, `///`), one entry per line.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect()
}

/// The first name of every `crate::` path in `code`, with its line (1-based).
fn crate_paths(code: &[&str]) -> Vec<(String, usize)> {
    let text = code.join("\n");
    let bytes = text.as_bytes();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let ident = |from: usize| -> String {
        text[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("crate::") {
        let at = from + found;
        from = at + "crate::".len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            continue;
        }
        if bytes.get(from) == Some(&b'{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in text[from..].char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        item_start = depth == 1;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                        out.push((ident(from + i), line_of(from + i)));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(from);
            if !name.is_empty() {
                out.push((name, line_of(at)));
            }
        }
    }
    out
}

/// The crate root's modules, and the module each name it re-exports comes
/// from (`pub use module::{A, B}` → A and B to `module`).
fn root_names(root: &Path) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(root).expect("crate root");
    let code = code_lines(&text).join("\n");
    let mut modules = BTreeSet::new();
    let mut exports = BTreeMap::new();
    for stmt in code.split(';') {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        if let [.., "mod", name] = words.as_slice() {
            modules.insert(name.trim_start_matches("r#").to_string());
            continue;
        }
        // `pub use module::...` (a private `use` re-exports nothing).
        let Some(at) = words.iter().position(|w| *w == "use") else {
            continue;
        };
        if at == 0 || !words[at - 1].starts_with("pub") {
            continue;
        }
        let rest = words[at + 1..].join(" ");
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        for item in items
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .split(',')
        {
            let name = item.split("::").last().unwrap_or("").trim();
            let name = name.split(" as ").last().unwrap_or(name).trim();
            if !name.is_empty() {
                exports.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    (modules, exports)
}

/// Every `crate::` reference between different top-level modules of the
/// crate whose sources are in `src` (root file `root_file`). A name that is
/// neither a module nor re-exported from one maps to `(root)`.
fn uses(src: &Path, root_file: &str) -> Vec<Use> {
    let (modules, exports) = root_names(&src.join(root_file));
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a path");
        let from = Path::new(first.as_os_str())
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        if rel == Path::new(root_file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for (name, line) in crate_paths(&code_lines(&text)) {
            let to = if modules.contains(&name) {
                name
            } else {
                exports
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| "(root)".to_string())
            };
            if to != from {
                out.push(Use {
                    from: from.clone(),
                    to,
                    file: file.clone(),
                    line,
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The references that break `order` (an import of a later or equal group,
/// of the root, or of a module the order does not list), and the modules
/// of the crate that the order leaves out.
fn order_violations(uses: &[Use], modules: &BTreeSet<String>, order: &[&[&str]]) -> Vec<String> {
    let rank = |m: &str| order.iter().position(|g| g.contains(&m));
    let mut bad: Vec<String> = modules
        .iter()
        .filter(|m| rank(m).is_none())
        .map(|m| format!("module {m} is not in the declared order"))
        .collect();
    for u in uses {
        let ok = matches!((rank(&u.from), rank(&u.to)), (Some(f), Some(t)) if t < f);
        if !ok {
            let file = u.file.strip_prefix(workspace()).unwrap_or(&u.file);
            bad.push(format!(
                "{}:{}: {} imports {} (against the order {order:?})",
                file.display(),
                u.line,
                u.from,
                u.to
            ));
        }
    }
    bad
}

/// A circle in the module graph, if there is one, as the modules around it.
fn circle(uses: &[Use]) -> Option<Vec<String>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for u in uses {
        edges.entry(&u.from).or_default().insert(&u.to);
    }
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == m) {
            let mut c: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            c.push(m.to_string());
            return Some(c);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, &edges, &mut Vec::new(), &mut done))
}

fn check_order(src: &Path, root_file: &str, order: &[&[&str]]) {
    let (modules, _) = root_names(&src.join(root_file));
    let found = uses(src, root_file);
    assert!(
        !found.is_empty(),
        "no crate:: paths found in {}",
        src.display()
    );
    let bad = order_violations(&found, &modules, order);
    assert!(
        bad.is_empty(),
        "imports against the order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn engine_imports_run_down_the_pipeline() {
    check_order(&workspace().join("engine/src"), "lib.rs", ENGINE);
}

#[test]
fn endpoint_imports_run_down_its_layers() {
    check_order(&workspace().join("endpoint/src"), "lib.rs", ENDPOINT);
}

#[test]
fn cli_modules_have_no_import_circle() {
    let found = uses(&workspace().join("cli/src"), "main.rs");
    assert_eq!(circle(&found), None);
}

/// The checker itself, on a crate written here: it must see each kind of
/// bad import, so that the tests above can fail.
#[test]
fn the_checker_catches_back_imports_circles_and_root_imports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "lib.rs",
        "mod low;\nmod high;\npub use low::Thing;\npub type Root = u8;\n",
    );
    write("low/mod.rs", "mod inner;\npub struct Thing;\n");
    // A back import in a nested file, in the grouped form; and a comment
    // that must not count.
    write(
        "low/inner.rs",
        "// use crate::high::Nothing;\nuse crate::{high::Other, Root};\n",
    );
    write(
        "high.rs",
        "use crate::Thing;\npub struct Other;\nfn f() { crate::low::Thing; }\n",
    );
    let found = uses(src, "lib.rs");
    let pairs: Vec<(&str, &str, usize)> = found
        .iter()
        .map(|u| (u.from.as_str(), u.to.as_str(), u.line))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("high", "low", 1),
            ("high", "low", 3),
            ("low", "(root)", 2),
            ("low", "high", 2)
        ]
    );
    let (modules, _) = root_names(&src.join("lib.rs"));
    let bad = order_violations(&found, &modules, &[&["low"], &["high"]]);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("low imports (root)"), "{bad:?}");
    assert!(bad[1].contains("low imports high"), "{bad:?}");
    assert_eq!(
        circle(&found),
        Some(vec!["high".into(), "low".into(), "high".into()])
    );
    // The right order for a crate without the back import passes.
    let good: Vec<Use> = found.into_iter().filter(|u| u.from == "high").collect();
    assert!(order_violations(&good, &modules, &[&["low"], &["high"]]).is_empty());
    assert_eq!(circle(&good), None);
}
