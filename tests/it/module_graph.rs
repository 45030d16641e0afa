//! The module graph has no cycle: among candor's top-level modules, and among the files of each
//! folder module. An edge is a `crate::`, `super::` or `self::` path in a file's code (comments
//! and test modules left out), resolved to the module it names. Text, not a compiler: a few
//! hundred lines of code whose rules are those the crate follows (no inline modules but `tests`,
//! no glob re-exports across modules).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path, `[]` for the crate root.
type Module = Vec<String>;

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    let mut edges: BTreeSet<(Module, Module)> = BTreeSet::new();
    for (module, path) in &files {
        let text = code(&fs::read_to_string(path).unwrap());
        for target in references(module, &text) {
            let to = resolve(&modules, &target);
            if &to != module {
                edges.insert((module.clone(), to));
            }
        }
    }
    assert!(
        edges.len() > 50,
        "the scan found {} edges: it no longer reads the code",
        edges.len()
    );

    // Top-level modules: each module stands for its whole subtree.
    let top = |m: &Module| m.first().cloned().unwrap_or_else(|| "crate".to_owned());
    let graph: BTreeSet<(String, String)> = edges
        .iter()
        .map(|(a, b)| (top(a), top(b)))
        .filter(|(a, b)| a != b)
        .collect();
    let mut found: Vec<String> = cycles(&graph)
        .iter()
        .map(|cycle| format!("top level: {}", cycle.join(" -> ")))
        .collect();
    for group in groups(&graph) {
        found.push(format!(
            "top level: these import each other: {}",
            group.join(", ")
        ));
    }

    // Inside each folder module: its files, each with its subtree; the folder's own `mod.rs`
    // (its facade, which re-exports its files) is left out.
    let folders: BTreeSet<Module> = modules
        .iter()
        .filter(|m| {
            !m.is_empty()
                && modules
                    .iter()
                    .any(|n| n.len() > m.len() && n.starts_with(m))
        })
        .cloned()
        .collect();
    for folder in &folders {
        let child = |m: &Module| {
            (m.len() > folder.len() && m.starts_with(folder)).then(|| m[folder.len()].clone())
        };
        let inner: BTreeSet<(String, String)> = edges
            .iter()
            .filter_map(|(a, b)| Some((child(a)?, child(b)?)))
            .filter(|(a, b)| a != b)
            .collect();
        for cycle in cycles(&inner) {
            found.push(format!("in {}: {}", show(folder), cycle.join(" -> ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles (an item used by two modules belongs in the lower one, or in a leaf of \
         its own):\n{}\n\nedges:\n{}",
        found.join("\n"),
        graph
            .iter()
            .map(|(a, b)| format!("  {a} -> {b}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checker itself finds what it is meant to find.
#[test]
fn the_scan_reads_use_trees_and_finds_cycles() {
    let module = vec!["proxy".to_owned(), "front".to_owned()];
    let text = code(
        "use crate::{demo, failure::{self, Refusal}};\n\
         // use crate::commented::Out;\n\
         use super::stack::Stack;\n\
         let x = crate::headers::X_REQUEST_ID; let s = \"crate::in_string\"; let q = b'\"';\n\
         let y: &'static str = crate::problem::TYPE;\n\
         #[cfg(test)]\nmod tests {\n    use crate::only_in_tests::X;\n}\n",
    );
    let found: BTreeSet<String> = references(&module, &text)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = [
        "demo",
        "failure",
        "failure::Refusal",
        "proxy::stack::Stack",
        "headers::X_REQUEST_ID",
        "problem::TYPE",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, want);

    let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let acyclic: BTreeSet<_> = [edge("a", "b"), edge("b", "c"), edge("a", "c")].into();
    assert_eq!(find_cycle(&acyclic), None);
    let cyclic: BTreeSet<_> = [edge("a", "b"), edge("b", "c"), edge("c", "a")].into();
    assert_eq!(
        find_cycle(&cyclic),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    // Two separate groups give two cycles; an edge between them joins no group.
    let two: BTreeSet<_> = [
        edge("a", "b"),
        edge("b", "a"),
        edge("b", "c"),
        edge("c", "d"),
        edge("d", "c"),
    ]
    .into();
    assert_eq!(
        cycles(&two),
        vec![
            vec!["a".to_owned(), "b".into(), "a".into()],
            vec!["c".to_owned(), "d".into(), "c".into()]
        ]
    );
}

/// Every source file of the library by its module path (the binary's `main.rs` is not part of
/// the library's graph).
fn sources(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut files = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("lib") if module.len() == 1 => module.clear(),
                Some("main") if module.len() == 1 => continue,
                Some("mod") => {
                    module.pop();
                }
                // Test files are not part of the product's graph.
                Some("tests") => continue,
                _ => {}
            }
            files.insert(module, path);
        }
    }
    files
}

/// The code of a file: comments, string and char literals and `#[cfg(test)] mod tests { … }`
/// blanked out.
fn code(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(text.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with('"') || rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let (open, close) = if rest.starts_with("r#\"") {
                ("r#\"", "\"#")
            } else if rest.starts_with("r\"") {
                ("r\"", "\"")
            } else {
                ("\"", "\"")
            };
            let mut j = i + open.len();
            while j < bytes.len() && !bytes[j..].starts_with(close.as_bytes()) {
                if open == "\"" && bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = (j + close.len()).min(bytes.len());
        } else if let Some(len) = char_literal(rest) {
            out.push_str("' '");
            i += len;
        } else if rest.starts_with("#[cfg(test)]") {
            // Skip the attribute and the item after it, to its matching brace (or `;`).
            let mut j = i + "#[cfg(test)]".len();
            while j < bytes.len() && bytes[j] != b'{' && bytes[j] != b';' {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'{' {
                let mut depth = 0;
                while j < bytes.len() {
                    match bytes[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            i = j + 1;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of the char literal (`'x'`, `'\\n'`, `'\\u{1F600}'`) at the start of `text`, if one
/// is there (a lifetime such as `'a` is not one).
fn char_literal(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('\'')?;
    let body = if let Some(escape) = rest.strip_prefix('\\') {
        if escape.starts_with("u{") {
            &rest[..rest.find('}')? + 1]
        } else {
            &rest[..1 + escape.chars().next()?.len_utf8()]
        }
    } else {
        let c = rest.chars().next()?;
        &rest[..c.len_utf8()]
    };
    rest[body.len()..]
        .starts_with('\'')
        .then_some(1 + body.len() + 1)
}

/// The paths `text` (the code of `module`) names through `crate::`, `super::` or `self::`,
/// made absolute; use trees (`crate::{a, b::{c, d}}`) expanded.
fn references(module: &Module, text: &str) -> Vec<Module> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("::") {
        // The word before `::` must be a whole `crate`, `super` or `self`.
        let word_start = text[..start]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |n| n + 1);
        let word = &text[word_start..start];
        let before = text[..word_start].chars().next_back();
        if before == Some(':') {
            continue; // part of a longer path, e.g. `super::super::x`
        }
        let base: Module = match word {
            "crate" => Vec::new(),
            "self" => module.clone(),
            "super" => {
                let mut base = module.clone();
                let mut at = start;
                base.pop();
                // `super::super::…`
                while text[at + 2..].starts_with("super::") {
                    base.pop();
                    at += "::super".len();
                }
                let mut paths = Vec::new();
                tree(&text[at + 2..], &base, &mut paths);
                found.extend(paths);
                continue;
            }
            _ => continue,
        };
        tree(&text[start + 2..], &base, &mut found);
    }
    found
}

/// Reads one use tree at the start of `text` below `prefix`, pushing each full path.
fn tree(text: &str, prefix: &Module, out: &mut Vec<Module>) -> usize {
    let text_trimmed = text.trim_start();
    let mut at = text.len() - text_trimmed.len();
    if text_trimmed.starts_with('{') {
        at += 1;
        loop {
            let rest = &text[at..];
            let skipped = rest.len() - rest.trim_start_matches([' ', '\n', '\r', '\t', ',']).len();
            at += skipped;
            if text[at..].starts_with('}') || at >= text.len() {
                return at + 1;
            }
            let used = tree(&text[at..], prefix, out);
            if used == 0 {
                return at;
            }
            at += used;
        }
    }
    let ident_len = text_trimmed
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text_trimmed.len());
    if ident_len == 0 {
        if text_trimmed.starts_with('*') {
            out.push(prefix.clone());
            return at + 1;
        }
        return 0;
    }
    let ident = &text_trimmed[..ident_len];
    at += ident_len;
    let mut path = prefix.clone();
    if ident != "self" {
        path.push(ident.to_owned());
    }
    if text[at..].starts_with("::") {
        let used = tree(&text[at + 2..], &path, out);
        if used > 0 {
            return at + 2 + used;
        }
    }
    out.push(path);
    at
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<Module>, path: &Module) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

/// A cycle of `edges` as `a -> b -> … -> a`, if there is one.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    cycles(edges).into_iter().next()
}

/// The modules of each group of more than one that import each other.
fn groups(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&str> = edges.iter().map(|(a, _)| a.as_str()).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for node in nodes {
        if done.contains(node) {
            continue;
        }
        let group: Vec<String> = edges
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|other| {
                *other == node || (reaches(edges, node, other) && reaches(edges, other, node))
            })
            .map(str::to_owned)
            .collect();
        done.extend(group.iter().cloned());
        if group.len() > 1 {
            found.push(group);
        }
    }
    found
}

/// Whether `to` can be reached from `from` along `edges`.
fn reaches(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(node) = stack.pop() {
        for (_, b) in edges.iter().filter(|(a, _)| a == node) {
            if b == to {
                return true;
            }
            if seen.insert(b.as_str()) {
                stack.push(b);
            }
        }
    }
    false
}

/// One cycle through each strongly connected group of `edges` (every group of modules that
/// import each other, directly or not), as `a -> b -> … -> a`.
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(node) = stack.pop() {
            for &to in next.get(node).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(to) {
                    stack.push(to);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&n| (n, reaches(n))).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for (&node, from_node) in &reach {
        if done.contains(node) || !from_node.contains(node) {
            continue;
        }
        // The group: every module that reaches `node` and that `node` reaches.
        let group: BTreeSet<&str> = from_node
            .iter()
            .copied()
            .filter(|other| reach.get(other).is_some_and(|r| r.contains(node)))
            .collect();
        done.extend(&group);
        // A shortest way back to `node` inside the group, breadth first.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([node]);
        'search: while let Some(at) = queue.pop_front() {
            for &to in next.get(at).map(Vec::as_slice).unwrap_or(&[]) {
                if !group.contains(to) {
                    continue;
                }
                if to == node {
                    parent.insert(node, at);
                    break 'search;
                }
                if !parent.contains_key(to) {
                    parent.insert(to, at);
                    queue.push_back(to);
                }
            }
        }
        let mut cycle = vec![node.to_owned()];
        let mut at = parent[node];
        while at != node {
            cycle.push(at.to_owned());
            at = parent[at];
        }
        cycle.push(node.to_owned());
        cycle.reverse();
        found.push(cycle);
    }
    found
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}
