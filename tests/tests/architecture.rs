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
    ];
    for manifest in ["engine/core/Cargo.toml", "dsl/Cargo.toml"] {
        let extra: Vec<_> = dependencies(manifest).into_iter().filter(|d| !allowed.contains(&d.as_str())).collect();
        assert!(extra.is_empty(), "{manifest} depends on {extra:?}, which the pure core may not");
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
