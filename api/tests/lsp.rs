//! `caseflow lsp` driven as an editor drives it: the binary spawned, JSON-RPC over its stdio.
//! The document is opened in the repository's `processes/` folder (its text sent, not written),
//! so the server finds the shipped rules above it and the shipped processes beside it.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

const DOC: &str = r#"process lsp_demo "演示" {
  source "test"

  fields {
    customer: text "客户" required
    urgency: choice(high, medium, low) "紧急程度" required
  }

  start -> recieve

  task receive "接收" {
    assign role cs_rep
    due rules.response_time[urgency]
    -> answer
  }

  task answer "答复" {
    assign role cs_rep
    due 1 workday
    -> done
  }

  end done "完成"
}
"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    /// Notifications seen while waiting for responses.
    notifications: Vec<Value>,
}

impl Client {
    fn start() -> Client {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let mut child = Command::new(env!("CARGO_BIN_EXE_caseflow"))
            .arg("lsp")
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("caseflow lsp starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    length = n.parse::<usize>().ok();
                }
            }
            let mut body = vec![0; length.expect("a Content-Length header")];
            stdout.read_exact(&mut body).unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        });
        let mut client = Client { child, stdin, messages, next_id: 1, notifications: Vec::new() };
        let init = client.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
        assert!(init["capabilities"]["hoverProvider"].as_bool().unwrap(), "{init}");
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn next(&mut self) -> Value {
        match self.messages.recv_timeout(Duration::from_secs(30)) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("no message from the server in 30 s"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output"),
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let m = self.next();
            if m["id"] == json!(id) {
                assert!(m["error"].is_null(), "{method}: {m}");
                return m["result"].clone();
            }
            self.notifications.push(m);
        }
    }

    fn diagnostics(&mut self, uri: &str) -> Value {
        if let Some(i) = self.notifications.iter().position(|n| n["params"]["uri"] == uri) {
            return self.notifications.remove(i)["params"]["diagnostics"].clone();
        }
        loop {
            let m = self.next();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                return m["params"]["diagnostics"].clone();
            }
        }
    }
}

fn uri() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().canonicalize().unwrap();
    format!("file://{}/processes/lsp_demo.flow", root.display())
}

/// The position (0-based line, UTF-16 column) of the `nth` occurrence of `needle`, plus `shift`.
fn at(text: &str, needle: &str, nth: usize, shift: usize) -> Value {
    let offset = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("no {needle}")).0 + shift;
    let line = text[..offset].matches('\n').count();
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    json!({ "line": line, "character": text[start..offset].encode_utf16().count() })
}

#[test]
fn the_language_server_answers_an_editor() {
    let mut c = Client::start();
    let uri = uri();
    let doc = |text: &str| json!({ "textDocument": { "uri": uri, "languageId": "flow", "version": 1, "text": text } });
    c.notify("textDocument/didOpen", doc(DOC));

    // Diagnostics as the checker gives them: code, place (UTF-16 columns), message and hint.
    let diagnostics = c.diagnostics(&uri);
    let typo = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "FLOW011")
        .unwrap_or_else(|| panic!("{diagnostics}"));
    assert_eq!(typo["range"]["start"], at(DOC, "recieve", 0, 0), "{typo}");
    assert!(typo["message"].as_str().unwrap().contains("there is no step named `recieve`"), "{typo}");
    assert!(typo["message"].as_str().unwrap().contains("did you mean `receive`?"), "{typo}");
    assert_eq!(typo["severity"], 1);

    // The quick fix the hint names.
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": typo["range"], "context": { "diagnostics": [typo] } }),
    );
    let fix = &actions[0];
    assert_eq!(fix["title"], "Change to `receive`", "{actions}");
    assert_eq!(fix["edit"]["changes"][&uri][0]["newText"], "receive");

    // The fixed text: no diagnostics.
    let fixed = DOC.replace("-> recieve", "-> receive");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    assert_eq!(c.diagnostics(&uri), json!([]), "the fixed file is clean");
    // A file changed on disk (rules, another process): open documents are checked again.
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": "file:///tmp/rules/values.toml", "type": 2 }] }),
    );
    assert_eq!(c.diagnostics(&uri), json!([]), "checked again after a watched file changed");

    // Hover: a field's type and label; a task's assignment and deadline, with the due times on
    // the calendar per urgency.
    let pos =
        |needle: &str, nth: usize| json!({ "textDocument": { "uri": uri }, "position": at(&fixed, needle, nth, 1) });
    let hover = c.request("textDocument/hover", pos("urgency", 0));
    let shown = hover["contents"]["value"].as_str().unwrap().to_string();
    assert!(shown.contains("**field** `urgency`: choice(high, medium, low) — 紧急程度"), "{shown}");
    let hover = c.request("textDocument/hover", pos("receive \"", 0));
    let shown = hover["contents"]["value"].as_str().unwrap().to_string();
    assert!(shown.contains("**task** `receive` — 接收"), "{shown}");
    assert!(shown.contains("`assign role cs_rep`") && shown.contains("`due rules.response_time[urgency]`"), "{shown}");
    assert!(shown.contains("urgency = high: **") && shown.contains("(Friday 18:30)"), "{shown}");
    let hover = c.request("textDocument/hover", pos("answer \"", 0));
    let shown = hover["contents"]["value"].as_str().unwrap().to_string();
    assert!(shown.contains("- started now (") && shown.contains("- started Friday 18:30 ("), "{shown}");

    // Definition: a step from a `->`; a table of the rules in its TOML file.
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": at(&fixed, "-> answer", 0, 4) }),
    );
    assert_eq!(def["uri"], uri);
    assert_eq!(def["range"]["start"], at(&fixed, "answer \"", 0, 0), "{def}");
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": at(&fixed, "response_time", 0, 2) }),
    );
    assert!(def["uri"].as_str().unwrap().ends_with("/rules/values.toml"), "{def}");
    let values = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/values.toml")).unwrap();
    assert_eq!(def["range"]["start"], at(&values, "response_time]", 0, 0), "at the key, as the loader reads it");

    // Hover where a person points at a deadline: the clause's due times on the calendar.
    for needle in ["1 workday", "due 1 workday", "response_time[urgency]"] {
        let hover = c.request("textDocument/hover", pos(needle, 0));
        let shown = hover["contents"]["value"].as_str().unwrap_or_default().to_string();
        assert!(shown.contains("**deadline** of `") && shown.contains("Due, on the calendar"), "{needle}: {shown}");
    }

    // A rename to a word of the language is refused: the file would no longer parse.
    c.send(json!({ "jsonrpc": "2.0", "id": 98, "method": "textDocument/rename",
        "params": { "textDocument": { "uri": uri }, "position": at(&fixed, "answer \"", 0, 1), "newName": "end" } }));
    loop {
        let m = c.next();
        if m["id"] == 98 {
            assert!(m["error"]["message"].as_str().unwrap_or_default().contains("word of the language"), "{m}");
            break;
        }
        c.notifications.push(m);
    }

    // References and rename of a step: every use, the declaration included.
    let refs = c.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": uri }, "position": at(&fixed, "answer \"", 0, 1), "context": { "includeDeclaration": true } }),
    );
    assert_eq!(refs.as_array().unwrap().len(), 2, "{refs}");
    let edit = c.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": uri }, "position": at(&fixed, "answer \"", 0, 1), "newName": "reply" }),
    );
    let edits = edit["changes"][&uri].as_array().unwrap();
    assert_eq!(edits.len(), 2, "{edit}");
    assert!(edits.iter().all(|e| e["newText"] == "reply"));

    // Completion after `->`: the steps.
    let mut typing = fixed.clone();
    typing = typing.replace("    -> done\n", "    -> \n");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": typing }] }),
    );
    let _ = c.diagnostics(&uri);
    let items = c.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": at(&typing, "    -> \n", 0, 7) }),
    );
    let labels: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    for step in ["receive", "answer", "done"] {
        assert!(labels.contains(&step), "{labels:?}");
    }
    assert!(!labels.contains(&"customer"), "only steps after `->`: {labels:?}");

    // Outline and formatting.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 4 }, "contentChanges": [{ "text": fixed.replace("  source \"test\"", "      source   \"test\"") }] }),
    );
    let _ = c.diagnostics(&uri);
    let symbols = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    let names: Vec<&str> =
        symbols[0]["children"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(symbols[0]["name"], "lsp_demo");
    assert_eq!(names, ["customer", "urgency", "receive", "answer", "done"]);
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(edits[0]["newText"], fixed, "formatting gives the canonical layout");

    // A request the server does not know is an error, not a crash; then a clean shutdown.
    c.send(json!({ "jsonrpc": "2.0", "id": 99, "method": "textDocument/unknownThing", "params": {} }));
    loop {
        let m = c.next();
        if m["id"] == 99 {
            assert!(!m["error"].is_null(), "{m}");
            break;
        }
    }
    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Go to definition in the rules finds what the rules loader reads: a decision table under
/// `[decision_tables]`, a value that is a table (`[values.response_time]`) and a scalar value
/// with no header of its own (`feedback_window = …` under `[values]`), and a role.
#[test]
fn rules_definitions_are_found_where_the_loader_reads_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let files = caseflow_engine::read_rules_dir(&dir).unwrap();
    for (name, file, key_line) in [
        ("complaint_routing", "tables.toml", "[decision_tables.complaint_routing]"),
        ("response_time", "values.toml", "[values.response_time]"),
        ("feedback_window", "values.toml", "feedback_window = "),
        ("cs_manager", "roles.toml", "[roles.cs_manager]"),
    ] {
        let (found, at) = caseflow::lsp::analysis::rules_definition(&files, name).unwrap_or_else(|| panic!("{name}"));
        assert!(found.ends_with(file), "{name}: {found}");
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let line = text[..at].rsplit('\n').next().unwrap().to_string() + text[at..].lines().next().unwrap_or_default();
        assert!(line.starts_with(key_line), "{name}: the definition is at `{line}`");
        assert!(text[at..].starts_with(name), "{name}: at its key");
    }
    assert_eq!(caseflow::lsp::analysis::rules_definition(&files, "no_such_thing"), None);
}
