//! The shape of the code, checked: the top-level modules of `src/` import
//! one another without circles (each concern has one home, and arrows point
//! one way). Reads the sources as text: `crate::<module>` references outside
//! `#[cfg(test)]` blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it refers to.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.iter().next().and_then(|c| c.to_str()).unwrap_or("");
        let module = first.trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_import_each_other_without_circles() {
    let graph = module_graph();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let circles: Vec<String> = graph
        .iter()
        .flat_map(|(m, deps)| deps.iter().map(move |d| (m, d)))
        .filter(|(m, d)| reaches(d, m))
        .map(|(m, d)| format!("{m} -> {d}"))
        .collect();
    assert!(circles.is_empty(), "import circles through: {circles:?}");
}

/// Library sources (`src/`; the demo bot is its own package) as (path,
/// whole text, code): the
/// code is the text before any `#[cfg(test)]` module, and empty for a
/// file of unit tests (tests aside).
fn library_sources() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read source");
            let code = if f.ends_with("tests.rs") {
                String::new()
            } else {
                text.split("#[cfg(test)]").next().unwrap_or("").to_string()
            };
            let name = f
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            (name, text, code)
        })
        .collect()
}

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 60;

#[test]
fn no_source_file_is_over_400_lines() {
    let over: Vec<String> = library_sources()
        .iter()
        .map(|(name, text, _)| (name, text.lines().count()))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    assert!(
        over.is_empty(),
        "files over {MAX_FILE_LINES} lines: {over:?}"
    );
}

/// A function runs from its `fn` line to the first line that closes it at
/// the same indentation (rustfmt's layout).
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(fn_at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let qualifiers = &words[..fn_at];
        let is_item = qualifiers
            .iter()
            .all(|w| w.starts_with("pub") || matches!(*w, "async" | "const" | "unsafe" | "extern"));
        // A declaration without a body (a trait's), its signature over
        // one or more lines, ends in `;` before any `{`.
        let declared = lines[at..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with(';') || l.ends_with('{'))
            .is_some_and(|l| l.ends_with(';'));
        if !is_item || declared {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let end = lines[at..]
            .iter()
            .position(|l| l.starts_with(&close) && l[indent..].starts_with('}'))
            .unwrap_or(0);
        let name = words
            .get(fn_at + 1)
            .unwrap_or(&"?")
            .split('(')
            .next()
            .unwrap_or("?");
        out.push((name.split('<').next().unwrap_or("?").to_string(), end + 1));
    }
    out
}

#[test]
fn no_function_is_over_60_lines() {
    let mut over = Vec::new();
    for (name, _, code) in library_sources() {
        for (func, n) in function_lengths(&code) {
            if n > MAX_FN_LINES {
                over.push(format!("{name}: {func} ({n})"));
            }
        }
    }
    assert!(
        over.is_empty(),
        "functions over {MAX_FN_LINES} lines: {over:#?}"
    );
}

/// Errors are typed inside the library: a `String` error cannot be matched
/// on, and loses its source.
#[test]
fn no_string_errors_in_the_library() {
    let mut found = Vec::new();
    for (name, _, code) in library_sources() {
        if name == "main.rs" {
            continue; // the binary's edge (anyhow)
        }
        for (n, line) in code.lines().enumerate() {
            if line.contains(", String>") && line.contains("Result<") {
                found.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> in: {found:#?}");
}

/// Markdown links in the docs either point at a file of this repository
/// that exists, or at a public web page: never outside the checkout (a
/// `../shared/...` link is dead in every clone).
#[test]
fn doc_links_stay_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![
        root.join("README.md"),
        root.join("CHANGELOG.md"),
        root.join("deploy/k8s/README.md"),
        root.join("deploy/k8s/replicas/README.md"),
    ];
    for dir in ["docs", "clients/python", "clients/node"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("doc dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    for entry in std::fs::read_dir(root.join("examples")).expect("examples") {
        let readme = entry.expect("entry").path().join("README.md");
        if readme.is_file() {
            docs.push(readme);
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read doc");
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..].chars().take_while(|c| *c != ')').collect();
            let file = target.split('#').next().unwrap_or("");
            if target.starts_with("https://") || target.starts_with("http://") {
                // Dead in every offline clone, and not ours to keep alive.
                broken.push(format!("{}: {target}", doc.display()));
                continue;
            }
            if file.is_empty() {
                continue;
            }
            let resolved = doc.parent().expect("dir").join(file);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|p| p.starts_with(root.canonicalize().expect("root")));
            if !inside {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(docs.len() >= 10, "{docs:?}");
    assert!(
        broken.is_empty(),
        "links that leave the repository or are dead: {broken:#?}"
    );
}
