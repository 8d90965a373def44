//! The layers of sessionfs import one way: system calls and the storage
//! core, then decoding, the filesystem layer, the fuser adapter, the mount
//! daemon's life cycle, the commands, the command line, and `main`. This
//! test reads every `src/**/*.rs`, collects each reference to another
//! module of the crate (`use crate::…` with its `{…}` groups, `super::…`,
//! `self::…`, a child module's name, and inline paths such as
//! `crate::fs::inode::ROOT`; not comments or string literals) and fails
//! naming the file, the line and both layers when a module reaches a layer
//! above its own. Inside the core, the same holds for its own order: system
//! calls, then the leaf modules (errors, fault seam, names, calendar,
//! durations), then a session's storage, the repository, the manager.
//!
//! A reference through a re-export (`crate::core::Repository`) counts as a
//! reference to where the item is defined (`core::repo`). A new top-level
//! module fails the test until it is given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first.
const LAYERS: &[&str] = &[
    "core",
    "decoding",
    "filesystem",
    "fuser adapter",
    "daemon",
    "commands",
    "command line",
    "main",
];

/// The layer of a module of the crate (its path below the crate root).
fn layer_of(module: &[String]) -> Option<usize> {
    let m: Vec<&str> = module.iter().map(String::as_str).collect();
    let name = match m.as_slice() {
        ["core", ..] => "core",
        ["decode", ..] | ["checkbox", ..] => "decoding",
        ["fs", ..] => "filesystem",
        ["mount", "adapter", ..] => "fuser adapter",
        ["mount", ..] => "daemon",
        ["commands", ..] | ["exit_codes"] => "commands",
        ["cli"] | ["helper"] | ["docs"] => "command line",
        ["<main>"] => "main",
        _ => return None,
    };
    LAYERS.iter().position(|l| *l == name)
}

/// The core's own order, lowest first (`core/mod.rs` only declares and
/// re-exports, and has no rank).
const CORE_ORDER: &[&[&str]] = &[
    &["sys"],
    &["error", "seam", "name", "calendar", "duration"],
    &["repo_dir"],
    &["storage"],
    &["lock"],
    &["writer"],
    &["repo"],
    &["manager"],
];

fn core_rank(module: &[String]) -> Option<usize> {
    match module {
        [core, sub, ..] if core == "core" => CORE_ORDER
            .iter()
            .position(|rank| rank.contains(&sub.as_str())),
        _ => None,
    }
}

fn core_rank_name(rank: usize) -> String {
    CORE_ORDER[rank].join("/")
}

/// Inside the command-line layer: the renderer of pages and completions,
/// the clap definitions, then the mount helper built on them, so that the
/// helper's use of the command line makes no cycle.
fn command_line_rank(module: &[String]) -> Option<(usize, &'static str)> {
    match module.first().map(String::as_str) {
        Some("docs") => Some((0, "command line's docs")),
        Some("cli") => Some((1, "command line's cli")),
        Some("helper") => Some((2, "command line's helper")),
        _ => None,
    }
}

/// Upward references known today, each with the change that removes it.
/// The test fails when one is no longer there, so that the list only
/// shrinks: remove the line with the change.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

/// The same for the core's own order.
const KNOWN_UPWARD_IN_CORE: &[(&str, &str, &str)] = &[];

// ----- reading the sources --------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// The tokens of Rust source that matter here, each with its line;
/// comments, string and character literals are dropped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Skips a quoted literal ending in `close` from `i` (just past the
    // opening), counting lines; returns the index past the closing quote.
    let skip_quoted = |mut i: usize, line: &mut usize| -> usize {
        while i < c.len() {
            match c[i] {
                '\\' => i += 2,
                '"' => return i + 1,
                '\n' => {
                    *line += 1;
                    i += 1
                }
                _ => i += 1,
            }
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i + 1, &mut line);
        } else if ch == '\'' {
            if next == Some('\\') {
                // An escaped character: '\n', '\'', '\u{…}'; the escaped
                // character itself may be a quote.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3; // 'x'
            } else {
                i += 1; // a lifetime's quote
            }
        } else if ident_char(ch) {
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // Raw strings (r"…", r#"…"#, br"…") and byte/C strings.
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && matches!(c.get(i), Some('"') | Some('#')) {
                let mut hashes = 0;
                while c.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                if c.get(i) == Some(&'"') {
                    i += 1;
                    loop {
                        if i >= c.len() {
                            break;
                        }
                        if c[i] == '\n' {
                            line += 1;
                        }
                        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                            i += 1 + hashes;
                            break;
                        }
                        i += 1;
                    }
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && c.get(i) == Some(&'"') {
                i = skip_quoted(i + 1, &mut line);
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && next == Some(':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// One source file: its module path and its text.
struct Source {
    file: String,
    module: Vec<String>,
    text: String,
}

/// The module path of a file under `src/` (`core/sys.rs` → `core::sys`,
/// `mount/mod.rs` → `mount`, `lib.rs` → the root, `main.rs` → `<main>`).
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.strip_prefix("src/").unwrap_or(rel);
    if rel == "main.rs" {
        return vec!["<main>".into()];
    }
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A reference from one file to a module path of the crate.
#[derive(Debug, Clone)]
struct Reference {
    file: String,
    line: usize,
    /// The module the reference is made from (inline modules included).
    from: Vec<String>,
    /// The whole path, resolved from the crate root.
    path: Vec<String>,
    /// For a `pub use`: the name it is re-exported under.
    reexport: Option<String>,
}

struct Parser<'a> {
    toks: &'a [(Tok, usize)],
}

impl Parser<'_> {
    fn ident(&self, i: usize) -> Option<&str> {
        match self.toks.get(i) {
            Some((Tok::Ident(s), _)) => Some(s),
            _ => None,
        }
    }

    fn is(&self, i: usize, t: &Tok) -> bool {
        self.toks.get(i).map(|(x, _)| x) == Some(t)
    }

    /// Parses a path or use tree whose segments start at `i`, below
    /// `base`; pushes each full path (and the name it binds, for a use)
    /// to `out`. Returns the index past it.
    fn tree(&self, mut i: usize, base: Vec<String>, out: &mut Vec<(Vec<String>, String)>) -> usize {
        let mut path = base;
        loop {
            if self.is(i, &Tok::Punct('{')) {
                i += 1;
                while i < self.toks.len() && !self.is(i, &Tok::Punct('}')) {
                    i = self.tree(i, path.clone(), out);
                    if self.is(i, &Tok::Punct(',')) {
                        i += 1;
                    } else if !self.is(i, &Tok::Punct('}')) {
                        break;
                    }
                }
                return i + 1;
            }
            if self.is(i, &Tok::Punct('*')) {
                out.push((path, "*".into()));
                return i + 1;
            }
            let Some(seg) = self.ident(i) else {
                let name = path.last().cloned().unwrap_or_default();
                out.push((path, name));
                return i;
            };
            match seg {
                "self" => {}
                "super" => {
                    path.pop();
                }
                s => path.push(s.to_string()),
            }
            i += 1;
            if self.is(i, &Tok::Path) {
                i += 1;
                continue;
            }
            let mut name = path.last().cloned().unwrap_or_default();
            if self.ident(i) == Some("as") {
                name = self.ident(i + 1).unwrap_or("_").to_string();
                i += 2;
            }
            out.push((path, name));
            return i;
        }
    }
}

/// Every reference `src` makes to a module of the crate; `modules` is the
/// set of the crate's module paths (to tell a child module from a type or
/// an external crate).
fn references(src: &Source, modules: &BTreeSet<Vec<String>>) -> Vec<Reference> {
    let toks = tokens(&src.text);
    let p = Parser { toks: &toks };
    let mut refs = Vec::new();
    // Inline modules (`mod tests { … }`): their name and the brace depth
    // they were opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let current: Vec<String> = src
            .module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(name) = p.ident(i + 1)
                    && p.is(i + 2, &Tok::Punct('{'))
                {
                    inline.push((name.to_string(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            _ => {}
        }
        let line = toks[i].1;
        let after_path = i > 0 && p.is(i - 1, &Tok::Path);
        let is_use = p.ident(i) == Some("use");
        let start = if is_use { i + 1 } else { i };
        let Some(first) = p.ident(start) else {
            i += 1;
            continue;
        };
        let starts_path = is_use || (!after_path && p.is(start + 1, &Tok::Path));
        let base: Option<Vec<String>> = match first {
            _ if !starts_path => None,
            "crate" => Some(Vec::new()),
            "super" | "self" => Some(current.clone()),
            child => {
                let mut m = current.clone();
                m.push(child.to_string());
                modules.contains(&m).then_some(current.clone())
            }
        };
        let Some(base) = base else {
            i += 1;
            continue;
        };
        // `crate` itself is no segment; `super`/`self` are handled by tree.
        let seg_start = if first == "crate" { start + 2 } else { start };
        let public = is_use
            && (p.ident(i.wrapping_sub(1)) == Some("pub")
                || (p.is(i.wrapping_sub(1), &Tok::Punct(')'))
                    && p.ident(i.wrapping_sub(4)) == Some("pub")));
        let mut paths = Vec::new();
        let end = p.tree(seg_start, base, &mut paths);
        for (path, name) in paths {
            refs.push(Reference {
                file: src.file.clone(),
                line,
                from: current.clone(),
                path,
                reexport: public.then(|| name.clone()),
            });
        }
        i = end.max(i + 1);
    }
    refs
}

/// The module a path names or is inside, following re-exports
/// (`core::Repository` → `core::repo`); `None` for the crate root.
fn target_module(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    reexports: &BTreeMap<(Vec<String>, String), Vec<String>>,
) -> Option<Vec<String>> {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let len = (0..=path.len())
            .rev()
            .find(|n| modules.contains(&path[..*n].to_vec()))?;
        let module = path[..len].to_vec();
        match path.get(len) {
            Some(item) if reexports.contains_key(&(module.clone(), item.clone())) => {
                let mut next = reexports[&(module, item.clone())].clone();
                next.extend_from_slice(&path[len + 1..]);
                path = next;
            }
            _ if module.is_empty() => return None,
            _ => return Some(module),
        }
    }
    None
}

/// A reference from a lower layer (or rank) to a higher one.
#[derive(Debug, Clone)]
struct Upward {
    file: String,
    line: usize,
    from: String,
    to: String,
    target: String,
}

impl std::fmt::Display for Upward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: the {} layer imports {} of the {} layer above it",
            self.file, self.line, self.from, self.target, self.to
        )
    }
}

struct Analysis {
    upward: Vec<Upward>,
    upward_in_core: Vec<Upward>,
    /// Files and references no layer covers.
    unmapped: Vec<String>,
}

fn analyse(sources: &[Source]) -> Analysis {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let all: Vec<Reference> = sources
        .iter()
        .filter(|s| s.module != ["<main>"])
        .flat_map(|s| references(s, &modules))
        .collect();
    let mut reexports = BTreeMap::new();
    for r in &all {
        if let Some(name) = &r.reexport
            && name != "*"
        {
            reexports.insert((r.from.clone(), name.clone()), r.path.clone());
        }
    }
    let mut analysis = Analysis {
        upward: Vec::new(),
        upward_in_core: Vec::new(),
        unmapped: Vec::new(),
    };
    for s in sources {
        if !s.module.is_empty() && layer_of(&s.module).is_none() {
            analysis.unmapped.push(format!(
                "{}: module {} has no layer (add it to layer_of)",
                s.file,
                s.module.join("::")
            ));
        }
    }
    for r in &all {
        let file_module = module_of(&r.file);
        if file_module.is_empty() {
            continue; // lib.rs declares the layers; it has none itself.
        }
        let Some(target) = target_module(&r.path, &modules, &reexports) else {
            analysis.unmapped.push(format!(
                "{}:{}: crate::{} names nothing inside a module",
                r.file,
                r.line,
                r.path.join("::")
            ));
            continue;
        };
        let (Some(from), Some(to)) = (layer_of(&file_module), layer_of(&target)) else {
            continue; // reported above
        };
        let up = |from: String, to: String| Upward {
            file: r.file.clone(),
            line: r.line,
            from,
            to,
            target: target.join("::"),
        };
        if to > from {
            analysis
                .upward
                .push(up(LAYERS[from].to_string(), LAYERS[to].to_string()));
        }
        if let (Some((from, from_name)), Some((to, to_name))) =
            (command_line_rank(&file_module), command_line_rank(&target))
            && to > from
        {
            analysis
                .upward
                .push(up(from_name.to_string(), to_name.to_string()));
        }
        if let (Some(from), Some(to)) = (core_rank(&file_module), core_rank(&target))
            && to > from
        {
            analysis
                .upward_in_core
                .push(up(core_rank_name(from), core_rank_name(to)));
        }
    }
    analysis
}

fn read_sources() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under the crate")
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                out.push(Source {
                    module: module_of(&rel),
                    file: rel,
                    text,
                });
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("src"), root, &mut out);
    assert!(
        out.len() > 20,
        "found only {} source files under src/",
        out.len()
    );
    out
}

/// Fails listing the upward references not in `known`, and the entries of
/// `known` no longer needed.
fn check(upward: &[Upward], known: &[(&str, &str, &str)], what: &str) {
    let is_known = |u: &Upward| {
        known
            .iter()
            .any(|(file, target, _)| u.file == *file && u.target.starts_with(target))
    };
    let mut problems: Vec<String> = upward
        .iter()
        .filter(|u| !is_known(u))
        .map(|u| u.to_string())
        .collect();
    for (file, target, why) in known {
        if !upward
            .iter()
            .any(|u| u.file == *file && u.target.starts_with(target))
        {
            problems.push(format!(
                "{file} no longer imports {target} ({why}): remove it from the known exceptions"
            ));
        }
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let analysis = analyse(&read_sources());
    assert!(
        analysis.unmapped.is_empty(),
        "{}",
        analysis.unmapped.join("\n")
    );
    check(
        &analysis.upward,
        KNOWN_UPWARD,
        "imports that go up the layers (system calls and core, decoding, filesystem, \
         fuser adapter, daemon, commands, command line, main)",
    );
}

#[test]
fn the_core_imports_in_its_own_order() {
    let analysis = analyse(&read_sources());
    check(
        &analysis.upward_in_core,
        KNOWN_UPWARD_IN_CORE,
        "imports that go up the core's order (sys, then error/seam/name/calendar/duration, \
         repo_dir, storage, lock, writer, repo, manager)",
    );
}

// ----- the check itself ----------------------------------------------------

fn fake(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(file, text)| Source {
            file: file.to_string(),
            module: module_of(file),
            text: text.to_string(),
        })
        .collect()
}

fn fake_crate(extra: &[(&str, &str)]) -> Vec<Source> {
    let mut files = vec![
        (
            "src/lib.rs",
            "pub mod core; pub mod decode; pub mod fs; pub mod mount; pub mod commands; pub mod cli;",
        ),
        (
            "src/core/mod.rs",
            "pub mod sys; pub mod name; pub mod storage; pub mod repo;\npub use repo::Repository;\npub use storage::{Storage as Store};",
        ),
        ("src/core/sys.rs", ""),
        ("src/core/name.rs", ""),
        ("src/core/storage.rs", ""),
        ("src/core/repo.rs", "use super::storage::Storage;"),
        ("src/decode.rs", ""),
        (
            "src/fs/mod.rs",
            "pub mod inode;\nuse crate::core::{self, Repository};\nuse crate::decode;",
        ),
        ("src/fs/inode.rs", ""),
        (
            "src/mount/mod.rs",
            "pub mod adapter; mod watch;\nfn f() { adapter::Adapter::new(); }",
        ),
        ("src/mount/adapter.rs", "use crate::fs::inode::ROOT;"),
        ("src/mount/watch.rs", ""),
        ("src/commands/mod.rs", "use crate::mount::{self, adapter};"),
        ("src/cli.rs", "use crate::commands;"),
        ("src/helper.rs", "use crate::cli::Cli;"),
        ("src/main.rs", "use sessionfs::cli;"),
    ];
    for (file, text) in extra {
        match files.iter_mut().find(|(f, _)| f == file) {
            Some(entry) => entry.1 = text,
            None => files.push((file, text)),
        }
    }
    fake(&files)
}

fn upward_lines(sources: &[Source]) -> Vec<String> {
    analyse(sources)
        .upward
        .iter()
        .map(|u| u.to_string())
        .collect()
}

#[test]
fn a_downward_crate_is_clean() {
    let a = analyse(&fake_crate(&[]));
    assert!(a.unmapped.is_empty(), "{:?}", a.unmapped);
    assert!(a.upward.is_empty(), "{:?}", a.upward);
    assert!(a.upward_in_core.is_empty(), "{:?}", a.upward_in_core);
}

#[test]
fn an_upward_use_is_reported_with_file_line_and_both_layers() {
    let got = upward_lines(&fake_crate(&[(
        "src/decode.rs",
        "//! docs\n\nuse std::io;\nuse crate::commands::Config;\n",
    )]));
    assert_eq!(
        got,
        ["src/decode.rs:4: the decoding layer imports commands of the commands layer above it"]
    );
}

#[test]
fn groups_inline_paths_super_and_child_modules_are_followed() {
    let got = upward_lines(&fake_crate(&[
        (
            "src/fs/mod.rs",
            "pub mod inode;\nuse crate::{core, decode::{self, X}, mount::adapter::Adapter as A};",
        ),
        (
            "src/fs/inode.rs",
            "fn f() {\n    let x = crate::mount::watch::Invalidation::RootAttributes;\n    super::super::cli::run();\n}",
        ),
        ("src/mount/adapter.rs", "fn g() { super::watch::f(); }"),
        (
            "src/core/name.rs",
            "mod tests {\n    use super::*;\n    use crate::fs;\n}",
        ),
    ]));
    assert_eq!(
        got,
        [
            "src/core/name.rs:3: the core layer imports fs of the filesystem layer above it",
            "src/fs/mod.rs:2: the filesystem layer imports mount::adapter of the fuser adapter layer above it",
            "src/fs/inode.rs:2: the filesystem layer imports mount::watch of the daemon layer above it",
            "src/fs/inode.rs:3: the filesystem layer imports cli of the command line layer above it",
            "src/mount/adapter.rs:1: the fuser adapter layer imports mount::watch of the daemon layer above it",
        ]
    );
}

#[test]
fn the_command_line_does_not_import_the_mount_helper() {
    let got = upward_lines(&fake_crate(&[(
        "src/cli.rs",
        "use crate::commands;\n#[command(after_long_help = crate::helper::MOUNT_HELP)]",
    )]));
    assert_eq!(
        got,
        [
            "src/cli.rs:2: the command line's cli layer imports helper of the command line's helper layer above it"
        ]
    );
}

#[test]
fn comments_strings_and_other_crates_are_not_imports() {
    let got = upward_lines(&fake_crate(&[(
        "src/core/sys.rs",
        "//! See [`crate::cli`].\n/* crate::fs:: /* nested */ crate::mount */\n\
         const A: &str = \"crate::cli::x\";\nconst B: &str = r#\"crate::fs\"#;\n\
         const C: char = '{';\nconst D: [char; 2] = ['\\'', '\\u{7b}'];\nfn f<'a>(x: &'a str) { std::fs::read(x); fuser::mount(); }\n",
    )]));
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn reexports_count_as_the_module_that_defines_the_item() {
    let a = analyse(&fake_crate(&[(
        "src/core/storage.rs",
        "use crate::core::Repository;\nuse super::Store;",
    )]));
    let got: Vec<String> = a.upward_in_core.iter().map(|u| u.to_string()).collect();
    assert_eq!(
        got,
        ["src/core/storage.rs:1: the storage layer imports core::repo of the repo layer above it"]
    );
    assert!(a.upward.is_empty(), "{:?}", a.upward);
}

#[test]
fn a_module_without_a_layer_is_reported() {
    let a = analyse(&fake_crate(&[("src/extra.rs", "")]));
    assert_eq!(
        a.unmapped,
        ["src/extra.rs: module extra has no layer (add it to layer_of)"]
    );
}

#[test]
fn known_exceptions_must_still_be_needed() {
    let upward = analyse(&fake_crate(&[])).upward;
    let known = [("src/mount/adapter.rs", "mount::watch", "test")];
    let failed = std::panic::catch_unwind(|| check(&upward, &known, "test")).is_err();
    assert!(failed, "a stale exception passed");
}
