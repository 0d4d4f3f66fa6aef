//! Generates the client from `docs/openapi.json` (the document the server serves; a test keeps
//! the file equal to it). progenitor reads OpenAPI 3.0 and the server writes 3.1, so the
//! document is first brought down to 3.0: a type list with `null` becomes `nullable`, and a
//! body offered in several media types keeps its JSON one (the text alternatives are for
//! people with curl).

use serde_json::Value;

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).expect("docs/openapi.json");
    let mut doc: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    doc["openapi"] = Value::String("3.0.3".into());
    to_openapi_30(&mut doc);
    json_bodies_only(&mut doc);
    let spec: openapiv3::OpenAPI = serde_json::from_value(doc).expect("an OpenAPI 3.0 document");
    let mut generator = progenitor::Generator::default();
    let tokens = generator.generate_tokens(&spec).expect("progenitor generates the client");
    let code = prettyplease::unparse(&syn::parse2(tokens).expect("generated code parses"));
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("client.rs");
    std::fs::write(out, code).expect("writes the client");
}

/// `"type": ["string", "null"]` → `"type": "string", "nullable": true`; a `oneOf`/`anyOf` with
/// `{"type": "null"}` → the rest, nullable.
fn to_openapi_30(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get("type").cloned() {
                let nullable = types.iter().any(|t| t == "null");
                let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
                map.insert("type".into(), rest.into_iter().next().unwrap_or(Value::String("string".into())));
                if nullable {
                    map.insert("nullable".into(), Value::Bool(true));
                }
            }
            for key in ["oneOf", "anyOf"] {
                if let Some(Value::Array(options)) = map.get(key).cloned() {
                    let null = serde_json::json!({ "type": "null" });
                    if options.contains(&null) {
                        let rest: Vec<Value> = options.into_iter().filter(|o| *o != null).collect();
                        map.remove(key);
                        if rest.len() == 1 {
                            map.insert("allOf".into(), Value::Array(rest));
                        } else {
                            map.insert(key.into(), Value::Array(rest));
                        }
                        map.insert("nullable".into(), Value::Bool(true));
                    }
                }
            }
            map.values_mut().for_each(to_openapi_30);
        }
        Value::Array(items) => items.iter_mut().for_each(to_openapi_30),
        _ => {}
    }
}

/// progenitor takes one media type per body: JSON where a body is offered in several, else the
/// first.
fn json_bodies_only(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            if let Some(content) = op.get_mut("requestBody").and_then(|b| b.get_mut("content")) {
                keep_one(content);
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for r in responses.values_mut() {
                    if let Some(content) = r.get_mut("content") {
                        keep_one(content);
                    }
                }
            }
        }
    }
}

fn keep_one(content: &mut Value) {
    let Some(map) = content.as_object_mut() else { return };
    if map.len() < 2 {
        return;
    }
    let key = if map.contains_key("application/json") {
        "application/json".to_string()
    } else {
        map.keys().next().cloned().unwrap_or_default()
    };
    map.retain(|k, _| *k == key);
}
