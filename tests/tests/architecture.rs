//! The invariants ARCHITECTURE.md states about the code's shape, checked: what the pure
//! crates may depend on, and which file alone knows the bytes of a key.

use caseflow_tests::{read, root};

/// The dependencies a crate's Cargo.toml lists under `[dependencies]`.
fn dependencies(manifest: &str) -> Vec<String> {
    let toml: toml::Value = toml::from_str(&read(&root().join(manifest))).expect("a manifest parses");
    toml.get("dependencies").and_then(|d| d.as_table()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn the_core_and_the_language_depend_on_nothing_that_does_io() {
    // Storage, runtimes, randomness, networking and file-system helpers: none belongs in the
    // core. A new dependency has to be added here on purpose, with the reason.
    let allowed = [
        "caseflow-dsl",
        "chrono",
        "chrono-tz",
        "serde",
        "serde_json",
        "toml",
        "toml_edit",
        "thiserror",
        "pest",
        "pest_derive",
        "petgraph",
        "codespan-reporting",
        "rust-sugiyama",
        // Only behind the `openapi` feature: the derive that describes the types the API
        // serialises. It reads nothing and writes nothing.
        "utoipa",
    ];
    for manifest in ["engine/core/Cargo.toml", "dsl/Cargo.toml"] {
        let extra: Vec<_> = dependencies(manifest).into_iter().filter(|d| !allowed.contains(&d.as_str())).collect();
        assert!(extra.is_empty(), "{manifest} depends on {extra:?}, which the pure core may not");
        let toml: toml::Value = toml::from_str(&read(&root().join(manifest))).expect("a manifest parses");
        let optional = toml["dependencies"]
            .get("utoipa")
            .is_none_or(|u| u.get("optional").and_then(|o| o.as_bool()) == Some(true));
        assert!(optional, "{manifest}: utoipa must stay optional (feature `openapi`), for the API only");
    }
}

#[test]
fn only_the_key_module_knows_the_bytes_of_a_key() {
    // A key literal is two bytes, a lower-case letter and a slash (`b"i/"`, `"u/"`); byte
    // offsets into keys (`k[2..]`, `.get(10..18)`) are the other sign of key layout leaking.
    let mut leaks = Vec::new();
    let dirs = ["engine/src", "api/src"];
    for dir in dirs {
        let mut stack = vec![root().join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") || path.ends_with("storage/keys.rs") {
                continue;
            }
            let text = read(&path);
            // Tests may spell keys out: they check the layout from outside.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let literal = line.match_indices("\"").any(|(i, _)| {
                    let rest = &line[i + 1..];
                    let b = rest.as_bytes();
                    b.len() >= 3
                        && b[0].is_ascii_lowercase()
                        && b[1] == b'/'
                        && (b[2] == b'"' || b[2].is_ascii_alphabetic())
                        && line[..i].ends_with('b')
                });
                if literal {
                    leaks.push(format!("{}:{}: {}", path.strip_prefix(root()).unwrap().display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "key bytes outside engine/src/storage/keys.rs:\n{}", leaks.join("\n"));
}

/// The map ARCHITECTURE.md draws is the code's: every file its entry points and its
/// "where to change" list name exists, every `caseflow` subcommand it names is one the binary
/// has, and every test file its `tests/` section lists is there.
#[test]
fn the_map_names_files_and_commands_that_exist() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let section = |title: &str| -> String {
        let start = doc.find(title).unwrap_or_else(|| panic!("ARCHITECTURE.md has no `{title}`"));
        let rest = &doc[start + title.len()..];
        rest[..rest.find("\n## ").or_else(|| rest.find("\n### ")).unwrap_or(rest.len())].to_string()
    };
    // Repository paths in backquotes: `dsl/src/parse.rs`, `engine/core/src/rules/`.
    let mut named = 0;
    for title in ["## Entry points", "## Where to change X"] {
        for quoted in section(title).split('`').skip(1).step_by(2) {
            let looks_like_path = quoted.contains('/')
                && !quoted.contains(' ')
                && !quoted.starts_with('/')
                && (quoted.ends_with(".rs")
                    || quoted.ends_with('/')
                    || quoted.ends_with(".json")
                    || quoted.ends_with(".md")
                    || quoted.ends_with(".pest"));
            if looks_like_path {
                assert!(
                    root().join(quoted).exists(),
                    "ARCHITECTURE.md ({title}) names `{quoted}`, which does not exist"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 30, "only {named} paths found: did the sections change shape?");
    // Subcommands: `caseflow serve`, `caseflow what-if`, … against the binary's declaration.
    let main = read(&root().join("api/src/main.rs"));
    let declared: Vec<String> = main[main.find("enum Command {").unwrap()..]
        .lines()
        .take_while(|l| !l.starts_with('}'))
        .filter_map(|l| {
            let l = l.trim_start();
            let name = l.split([' ', '{', ',']).next()?;
            (l.len() > 4 && l.starts_with(char::is_uppercase) && (l.ends_with('{') || l.ends_with(','))).then(|| {
                // clap's kebab-case of the variant
                let mut out = String::new();
                for (i, c) in name.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        out.push('-');
                    }
                    out.push(c.to_ascii_lowercase());
                }
                out
            })
        })
        .collect();
    let entry = section("## Entry points");
    let mut commands = 0;
    for quoted in entry.split('`').skip(1).step_by(2) {
        if let Some(rest) = quoted.strip_prefix("caseflow ") {
            let sub = rest.split([' ', ',']).next().unwrap();
            assert!(
                declared.iter().any(|d| d == sub),
                "ARCHITECTURE.md names `caseflow {sub}`; the binary has {declared:?}"
            );
            commands += 1;
        }
    }
    assert!(commands >= 6, "only {commands} commands named");
    // Test files of the `tests/` section.
    let tests = section("### `tests/` — integration tests");
    for line in tests.lines().filter(|l| l.starts_with("- `")) {
        let file = line.split('`').nth(1).unwrap();
        if file.ends_with(".rs") {
            assert!(
                root().join("tests/tests").join(file).exists(),
                "ARCHITECTURE.md lists tests/tests/{file}, which does not exist"
            );
        }
    }
}
