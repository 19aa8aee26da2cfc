//! The structure ARCHITECTURE.md promises, checked on the source: the layer table there (read
//! from the document, so it is stated once) against every `use crate::…`, `crate::…` and
//! `super::…` path outside tests; the adapters know nothing of each other; no import cycle among
//! the modules of any crate of the workspace; the pure layer does no I/O; the services know
//! neither the command line nor HTTP; only `main` exits the process; one visibility convention
//! (`pub` only for what `lib.rs` re-exports), enforced by the `unreachable_pub` lint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(layer number, folder)` rows of ARCHITECTURE.md's "Layers" table: `| 0 | `pure` | … |`.
fn layer_table() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        if let (Ok(n), Some(folder)) = (
            cells[1].parse::<usize>(),
            cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
        ) {
            layers.insert(folder.to_string(), n);
        }
    }
    assert!(
        layers.len() >= 5,
        "ARCHITECTURE.md has no layer table (| N | `folder` | … |): {layers:?}"
    );
    layers
}

/// A source file's module path, e.g. `services/claim/attempt.rs` → `services::claim::attempt`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    match file.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        f => parts.push(f.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its tests and comments.
fn code_of(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]").next().unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The paths `prefix::a::b…` and `prefix::{a::b, c}` in `code`, as segment lists.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    fn parse(rest: &str, base: &[String], out: &mut Vec<Vec<String>>) {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parse(item.trim(), base, out);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            parse(item.trim(), base, out);
            return;
        }
        let (id, after) = ident_at(rest);
        if id.is_empty() || id == "self" {
            out.push(base.to_vec());
            return;
        }
        let mut path = base.to_vec();
        path.push(id.to_string());
        match after.strip_prefix("::") {
            Some(more) => parse(more, &path, out),
            None => out.push(path),
        }
    }
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        parse(&code[i + prefix.len()..], &[], &mut out);
    }
    out
}

struct Crate {
    name: String,
    /// Module path → the file's code.
    modules: BTreeMap<Vec<String>, String>,
}

fn read_crate(dir: &Path) -> Crate {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            (
                module_of(rel),
                code_of(&std::fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    Crate {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        modules,
    }
}

impl Crate {
    /// The unit a path lands in: its longest known module, cut to `depth` segments.
    fn unit(&self, path: &[String], depth: usize) -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains_key(p))
            .map(|p| p[..p.len().min(depth)].to_vec())
    }

    /// Edges between units (modules cut to `depth` segments), each with an example.
    fn edges(&self, depth: usize) -> BTreeMap<(Vec<String>, Vec<String>), String> {
        let mut edges = BTreeMap::new();
        for (module, code) in &self.modules {
            if module.is_empty() {
                continue; // lib.rs / main.rs: the crate root declares and re-exports
            }
            let from = module[..module.len().min(depth)].to_vec();
            let mut targets = paths_after(code, "crate::");
            // `super::` from `a/b/c.rs` (module a::b::c) is `a::b`; from `a/b/mod.rs` (module
            // a::b), `a`.
            let parent = module[..module.len() - 1].to_vec();
            for p in paths_after(code, "super::") {
                targets.push(parent.iter().cloned().chain(p).collect());
            }
            for t in targets {
                if let Some(to) = self.unit(&t, depth) {
                    if to != from && !to.is_empty() {
                        edges.entry((from.clone(), to)).or_insert_with(|| {
                            format!("{} uses {}", module.join("::"), t.join("::"))
                        });
                    }
                }
            }
        }
        edges
    }
}

/// The cycles (strongly connected components of more than one unit) of a graph.
fn cycles(edges: &BTreeMap<(Vec<String>, Vec<String>), String>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&Vec<String>> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
    for n in &nodes {
        let mut comp: Vec<String> = nodes
            .iter()
            .filter(|m| reach[*n].contains(**m) && reach[**m].contains(*n))
            .map(|m| m.join("::"))
            .collect();
        if comp.len() > 1 {
            comp.sort();
            out.insert(comp);
        }
    }
    out.into_iter().collect()
}

fn eipool() -> Crate {
    read_crate(&workspace().join("crates/eipool"))
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let layers = layer_table();
    let krate = eipool();
    for top in krate.modules.keys().filter(|m| m.len() == 1) {
        assert!(
            layers.contains_key(&top[0]),
            "module {} is in no layer of ARCHITECTURE.md's table {layers:?}",
            top[0]
        );
    }
    let mut upward = Vec::new();
    for ((from, to), example) in krate.edges(1) {
        let (lf, lt) = (layers[&from[0]], layers[&to[0]]);
        if lt > lf {
            upward.push(format!(
                "{} (layer {lf}) → {} (layer {lt}): {example}",
                from[0], to[0]
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_adapters_do_not_depend_on_each_other() {
    let crossing: Vec<String> = eipool()
        .edges(2)
        .into_iter()
        .filter(|((a, b), _)| {
            a[0] == "adapters" && b[0] == "adapters" && a.len() == 2 && b.len() == 2
        })
        .map(|(_, example)| example)
        .collect();
    assert!(crossing.is_empty(), "{crossing:#?}");
}

#[test]
fn no_import_cycle_among_the_modules_of_any_crate() {
    let mut found = Vec::new();
    for krate in ["eipool", "eipool-lab", "atlantis-authz", "cli-edge"] {
        let c = read_crate(&workspace().join("crates").join(krate));
        // eipool's modules are its layers' children (services::claim, adapters::aws, …); the
        // other crates are flat.
        let depth = if krate == "eipool" { 2 } else { 1 };
        let edges = c.edges(depth);
        for cycle in cycles(&edges) {
            let why: Vec<&String> = edges
                .iter()
                .filter(|((a, b), _)| {
                    cycle.contains(&a.join("::")) && cycle.contains(&b.join("::"))
                })
                .map(|(_, e)| e)
                .collect();
            found.push(format!("{}: cycle among {cycle:?}: {why:#?}", c.name));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_pure_layer_does_no_io() {
    // Randomness of its own is a source of entropy (a seeded generator over a sample handed
    // in, as the passes machine's order, is deterministic).
    const FORBIDDEN: [&str; 15] = [
        "tokio",
        "async fn",
        ".await",
        "std::fs",
        "std::net::Tcp",
        "Instant::now",
        "SystemTime::now",
        "rand::rng()",
        "rand::random",
        "from_os_rng",
        "OsRng",
        "thread_rng",
        "aws_",
        "redis::",
        "std::env",
    ];
    let mut found = Vec::new();
    for (module, code) in eipool()
        .modules
        .iter()
        .filter(|(m, _)| m.first().is_some_and(|f| f == "pure"))
    {
        for word in FORBIDDEN {
            if code.contains(word) {
                found.push(format!("{} uses {word}", module.join("::")));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// `(module, word)` for every module of eipool under `layers` whose code (tests and comments
/// left out) contains one of `words`.
fn uses(layers: &[&str], words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, code) in eipool()
        .modules
        .iter()
        .filter(|(m, _)| m.first().is_some_and(|f| layers.contains(&f.as_str())))
    {
        for word in words {
            if code.contains(word) {
                found.push(format!("{} uses {word}", module.join("::")));
            }
        }
    }
    found
}

#[test]
fn the_services_know_neither_the_command_line_nor_http() {
    let found = uses(
        &["pure", "support", "adapters", "services"],
        &["clap", "axum", "hyper::server"],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_main_exits_the_process() {
    // Every exit code comes from `Error::exit_code`, in `main`: a module that exits by itself
    // skips the exit table, the JSON log format and the cleanup of what is held.
    let found = uses(
        &["pure", "support", "adapters", "services", "app"],
        &["process::exit", ".exit()", "process::abort"],
    );
    assert!(found.is_empty(), "{found:#?}");
    let main = std::fs::read_to_string(workspace().join("crates/eipool/src/main.rs")).unwrap();
    assert!(
        main.contains("ExitCode::from(e.exit_code())"),
        "main maps errors to exit codes through Error::exit_code"
    );
}

#[test]
fn cli_edge_depends_on_no_tool_crate_and_every_binary_uses_it() {
    let manifest = std::fs::read_to_string(workspace().join("crates/cli-edge/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("cli-edge has a [dependencies] table");
    for tool in [
        "eipool",
        "eipool-lab",
        "eipool-model",
        "atlantis-authz",
        "tfmod",
    ] {
        // `tool = …` or `tool.workspace = true`: the key before any ` `, `=` or `.`.
        let key = |l: &str| {
            l.trim()
                .split([' ', '=', '.'])
                .next()
                .unwrap_or("")
                .to_string()
        };
        assert!(
            !deps.lines().any(|l| key(l) == tool),
            "cli-edge depends on {tool}"
        );
    }
    for tool in ["eipool", "atlantis-authz", "tfmod"] {
        let main = workspace().join(format!("crates/{tool}/src/main.rs"));
        let main = std::fs::read_to_string(main).unwrap();
        assert!(
            main.contains("cli_edge::panic::exit_on_panic("),
            "{tool}'s main.rs installs no cli-edge panic hook"
        );
    }
}

#[test]
fn pub_is_only_for_what_lib_rs_re_exports() {
    // The convention: `pub` for what the binary and the integration tests use (re-exported from
    // lib.rs), `pub(crate)` for everything else. The lint enforces it (clippy -D warnings).
    let lib = std::fs::read_to_string(workspace().join("crates/eipool/src/lib.rs")).unwrap();
    assert!(
        lib.contains("#![warn(unreachable_pub)]"),
        "lib.rs lost the lint"
    );
}

#[test]
fn the_checker_sees_imports_of_every_shape() {
    let code = "use crate::a::b::{c, d::e};\nlet x = crate::f::g(1);\nuse super::{h, i::j};";
    let crate_paths = paths_after(code, "crate::");
    assert_eq!(
        crate_paths,
        vec![
            vec!["a", "b", "c"],
            vec!["a", "b", "d", "e"],
            vec!["f", "g"],
        ]
    );
    assert_eq!(
        paths_after(code, "super::"),
        vec![vec!["h"], vec!["i", "j"]]
    );
    let mut edges = BTreeMap::new();
    let v = |s: &str| vec![s.to_string()];
    edges.insert((v("a"), v("b")), String::new());
    edges.insert((v("b"), v("c")), String::new());
    assert!(cycles(&edges).is_empty());
    edges.insert((v("c"), v("a")), String::new());
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
}

/// What ARCHITECTURE.md cites in backticks that looks like a file (`protocol.rs`,
/// `tests/it/chaos.rs`, `deploy/iam/`) or a code name (`plan::masked_verdict`, `Leasing::Masked`,
/// `settle_masked`, `Claimer`): `(files, names)`. Flags, keys, commands and prose words are not
/// names (`--timeout`, `claim:<alloc>`, `eipool claim`, `pure`).
fn cited(doc: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut files, mut names) = (BTreeSet::new(), BTreeSet::new());
    let mut in_code_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        for (i, token) in line.split('`').enumerate() {
            if i % 2 == 0 || token.is_empty() {
                continue;
            }
            let is_file = [".rs", ".md", ".yaml", ".json", ".py", ".toml", "/"]
                .iter()
                .any(|e| token.ends_with(e));
            let plain = token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/' || c == '.');
            if is_file && plain && !token.starts_with('/') {
                files.insert(token.to_string());
            } else if plain
                && !token.contains('/')
                && !token.contains('.')
                && (token.contains("::")
                    || token.contains('_')
                    || token.starts_with(|c: char| c.is_ascii_uppercase()))
                && token.chars().any(|c| c.is_ascii_lowercase())
            {
                names.insert(token.to_string());
            }
        }
    }
    (files, names)
}

#[test]
fn every_file_and_name_architecture_md_cites_exists() {
    let root = workspace();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let (files, names) = cited(&doc);
    assert!(files.len() > 20 && names.len() > 30, "{files:?} {names:?}");

    let mut sources = Vec::new();
    for krate in ["eipool", "eipool-lab", "eipool-model", "cli-edge"] {
        rust_files(&root.join("crates").join(krate), &mut sources);
    }
    let all_files: Vec<String> = sources
        .iter()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .collect();
    let text: String = sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let bases = [
        "",
        "crates/eipool/",
        "crates/eipool/src/",
        "crates/eipool/src/services/",
        "crates/eipool/src/services/claim/",
        "crates/eipool/src/adapters/",
        "crates/eipool/src/adapters/aws/",
        "crates/eipool/src/adapters/redis/",
        "crates/eipool/src/pure/",
        "crates/eipool/src/support/",
        "crates/eipool/src/app/",
        "crates/eipool/src/services/agent/",
        "crates/eipool/tests/it/",
        "crates/eipool-lab/src/",
    ];
    let missing_files: Vec<&String> = files
        .iter()
        .filter(|f| {
            !bases.iter().any(|b| root.join(format!("{b}{f}")).exists())
                && !all_files.iter().any(|p| p.ends_with(&format!("/{f}")))
        })
        .collect();
    let word = |w: &str| {
        text.match_indices(w).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + w.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    };
    // A path such as `plan::masked_verdict` or `Ec2::associate`: its last segment is a name in
    // the code (a function, type, constant, variant or test).
    let missing_names: Vec<&String> = names
        .iter()
        .filter(|n| !word(n.rsplit("::").next().unwrap()))
        .collect();
    assert!(
        missing_files.is_empty() && missing_names.is_empty(),
        "ARCHITECTURE.md cites what does not exist: files {missing_files:?}, names {missing_names:?}"
    );
}

#[test]
fn the_citation_reader_tells_names_from_prose() {
    let (files, names) = cited(
        "`plan::masked_verdict` and `protocol.rs`, `deploy/iam/`, `--timeout`, `claim:<alloc>`, \
         `eipool claim`, `pure`, `Claimer`, `EXIT_CODES`, `a_test_name`\n```\n`not_this`\n```",
    );
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["deploy/iam/", "protocol.rs"]
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["Claimer", "a_test_name", "plan::masked_verdict"]
    );
}
