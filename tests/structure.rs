//! The shape of the code, checked: modules import one another without
//! circles at every level (the top-level modules of `src/`, and the files
//! inside each folder), so each concern has one home and arrows point one
//! way. Reads the sources as text: `crate::`, `super::` and `self::` paths
//! outside `#[cfg(test)]` blocks.

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

/// Every file's module path (`backend::redis::turns`; a `mod.rs` is its
/// folder's module) → the modules it names through `crate::`, `super::`
/// and `self::` paths, each resolved to the longest known module.
fn file_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |f: &Path| -> Vec<String> {
        let rel = f.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        parts
    };
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        if me.first().is_some_and(|m| m == "main" || m == "bin") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut deps = BTreeSet::new();
        for (start, base) in path_starts(code, &me) {
            for segments in path_segments(&code[start..]) {
                let mut full = base.clone();
                full.extend(segments);
                while !full.is_empty() && !modules.contains(&full) {
                    full.pop();
                }
                if full != me {
                    deps.insert(full);
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

/// Where each `crate::`, `super::` or `self::` path starts in `code`
/// (after its prefix), with the module it starts from: `super` of
/// `a::b` (in `a/b.rs` or `a/b/mod.rs` alike) is `a`.
fn path_starts(code: &str, me: &[String]) -> Vec<(usize, Vec<String>)> {
    let sup = me[..me.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", sup),
        ("self::", me.to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            out.push((at + prefix.len(), base.clone()));
        }
    }
    out
}

/// The module segments of the path at the start of `text`: `a::b::Item`
/// gives `[a, b, Item]`; a group `{a::X, b}` gives one path per member.
fn path_segments(text: &str) -> Vec<Vec<String>> {
    let ident = |t: &str| -> String {
        t.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let end = group
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => return true,
                    '}' => depth -= 1,
                    _ => {}
                }
                false
            })
            .map_or(group.len(), |(i, _)| i);
        return group[..end]
            .split(',')
            .flat_map(|member| path_segments(member.trim()))
            .collect();
    }
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let name = ident(rest);
        if name.is_empty() {
            if let Some(more) = rest.strip_prefix('{') {
                return path_segments(&format!("{{{more}"))
                    .into_iter()
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect();
            }
            break;
        }
        rest = &rest[name.len()..];
        segments.push(name);
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => break,
        }
    }
    vec![segments]
}

#[test]
fn modules_import_each_other_without_circles_at_every_level() {
    let graph = file_graph();
    assert!(graph.len() > 60, "found the files: {}", graph.len());
    // Each edge seen at the level where the two modules part: between the
    // children of their deepest common module. An edge to an ancestor (a
    // parent's re-export) or a descendant is no sibling's.
    let mut levels: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, deps) in &graph {
        for to in deps {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            levels
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    let mut circles = Vec::new();
    for (parent, siblings) in &levels {
        let reaches = |from: &str, to: &str| {
            let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_string()]);
            while let Some(m) = stack.pop() {
                for next in siblings.get(&m).into_iter().flatten() {
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
        for (m, deps) in siblings {
            for d in deps.iter().filter(|d| reaches(d, m)) {
                circles.push(format!("in {}: {m} -> {d}", parent.join("::")));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
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

/// The library's lines (`file:line: text`) that `flagged` picks: in its
/// code (unit tests aside) or, with `whole_text`, anywhere; the binary's
/// edge (`main.rs`, anyhow) only with `with_main`.
fn flagged_lines(whole_text: bool, with_main: bool, flagged: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (name, text, code) in library_sources() {
        if name == "main.rs" && !with_main {
            continue;
        }
        let read = if whole_text { &text } else { &code };
        for (n, line) in read.lines().enumerate() {
            if flagged(line) {
                found.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

/// Errors are typed inside the library: a `String` error cannot be matched
/// on, and loses its source.
#[test]
fn no_string_errors_in_the_library() {
    let found = flagged_lines(false, false, |line| {
        line.contains(", String>") && line.contains("Result<")
    });
    assert!(found.is_empty(), "Result<_, String> in: {found:#?}");
}

/// An error keeps its kind and its source: no error is built from another
/// error's text (`X(e.to_string())`), which loses both. (Messages for
/// people, such as a config key's `ConfigError` or a JSON answer, may
/// still say what an error says.)
#[test]
fn no_error_is_flattened_into_a_string() {
    let found = flagged_lines(false, false, |line| {
        let flattened = ["(e.to_string())", "(&e.to_string())", "(err.to_string())"]
            .iter()
            .any(|p| line.contains(p))
            || line.contains("format!(\"{e}\")");
        flattened && !line.contains("json!")
    });
    assert!(found.is_empty(), "errors flattened into text: {found:#?}");
}

/// A mutex that a panic elsewhere poisoned must not make a lock skip its
/// work (`if let Ok(..) = m.lock()`): the library's mutexes are
/// `parking_lot`'s, which cannot be poisoned.
#[test]
fn no_mutex_can_be_poisoned() {
    let found = flagged_lines(true, true, |line| {
        let std_lock = line.contains("std::sync::Mutex")
            || line.contains("std::sync::RwLock")
            || (line.trim_start().starts_with("use std::sync::")
                && (line.contains("Mutex") || line.contains("RwLock")));
        std_lock || line.contains(".lock().ok()") || line.contains("= m.lock()")
    });
    assert!(found.is_empty(), "poisonable locks: {found:#?}");
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

/// `scripts/fuzz.sh` reuses the release build's dependencies (same target
/// directory): that holds only while `fuzz/` resolves the same versions and
/// builds with the same release profile as the main crate.
#[test]
fn the_fuzz_build_shares_the_release_builds_dependencies() {
    let read = |path: &str| -> toml::Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let versions = |lock: &toml::Value| -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in lock["package"].as_array().into_iter().flatten() {
            let (Some(name), Some(version)) = (p["name"].as_str(), p["version"].as_str()) else {
                continue;
            };
            out.entry(name.into()).or_default().insert(version.into());
        }
        out
    };
    let main = versions(&read("Cargo.lock"));
    let fuzz = versions(&read("fuzz/Cargo.lock"));
    let differ: Vec<_> = fuzz
        .iter()
        .filter(|(name, v)| main.get(*name).is_some_and(|m| !v.is_subset(m)))
        .collect();
    assert!(differ.is_empty(), "fuzz/Cargo.lock differs from Cargo.lock: {differ:?} (copy Cargo.lock into fuzz/ and build there once)");
    // A dependency added to statehold must be in the fuzz lock too, or the
    // fuzz build (`--locked`) fails in CI.
    let fuzz_lock = read("fuzz/Cargo.lock");
    let locked: BTreeSet<&str> = fuzz_lock["package"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some("statehold"))
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str()?.split(' ').next())
        .collect();
    let manifest = read("Cargo.toml");
    let missing: Vec<&String> = manifest["dependencies"]
        .as_table()
        .into_iter()
        .flat_map(|t| t.keys())
        .filter(|name| !locked.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in fuzz/Cargo.lock: {missing:?}: run `cargo update --offline -p statehold` in fuzz/"
    );
    let profile = |manifest: &toml::Value| {
        manifest
            .get("profile")
            .and_then(|p| p.get("release"))
            .cloned()
    };
    assert_eq!(
        profile(&read("Cargo.toml")),
        profile(&read("fuzz/Cargo.toml")),
        "fuzz/Cargo.toml's [profile.release] must be the main crate's"
    );
}

/// The request path is bounded on what it uses of a backend (turns,
/// records, kept versions: `PathStore`), never on the whole `Backend`
/// (pings, purges, scans are the process's).
#[test]
fn the_request_path_is_bounded_on_what_it_uses() {
    let found: Vec<String> = library_sources()
        .into_iter()
        .filter(|(name, ..)| name.starts_with("pipeline/"))
        .flat_map(|(name, _, code)| {
            code.lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .filter(|l| l.contains("B: Backend") || l.contains("Lifecycle"))
                .map(|l| format!("{name}: {}", l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "the request path reaches past PathStore: {found:#?}"
    );
}

/// The admin API and the background work get the shared `Services`, not
/// the pipeline: only the late-report endpoint (which finishes a request)
/// holds the pipeline.
#[test]
fn the_admin_api_and_the_background_share_services_not_the_pipeline() {
    let found: Vec<String> = library_sources()
        .into_iter()
        .filter(|(name, ..)| {
            name.starts_with("admin/") || name.starts_with("services/") || name == "maintenance.rs"
        })
        .flat_map(|(name, _, code)| {
            code.lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .filter(|l| l.contains("pipeline.") || l.contains(".pipeline"))
                .map(|l| format!("{name}: {}", l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "reaching through the pipeline: {found:#?}"
    );
}

/// Stages pass named values (`Conversation`, `Reported`, `Admitted`, the
/// request's `Ctx`), not tuples destructured in a parameter list.
#[test]
fn no_stage_takes_a_tuple_parameter() {
    let found: Vec<String> = library_sources()
        .into_iter()
        .filter(|(name, ..)| name.starts_with("pipeline/"))
        .flat_map(|(name, _, code)| {
            code.lines()
                .filter(|l| {
                    let t = l.trim_start();
                    t.starts_with('(') && t.contains("): (")
                })
                .map(|l| format!("{name}: {}", l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(found.is_empty(), "tuple parameters: {found:#?}");
}
