//! The configuration reference in `gateway/README.md` is generated from the code, and this
//! test keeps it so: every field of `Config` (found by serialising the documented defaults,
//! so a field added later is picked up without touching this file), its TOML path, its
//! environment variable (`config::ENV_VARS`), its default and its one-line meaning
//! (`config::FIELD_DOCS`). It fails when a field has no meaning written down, when an entry
//! names no field, and when the README differs from the code (with a diff and the command
//! that rewrites the README).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use gateway::config::{Config, ENV_VARS, FIELD_DOCS};
use serde_json::Value;

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test -p tec-gateway --test config_docs";
const FIELDS_BEGIN: &str = "<!-- BEGIN generated configuration table: edit gateway/src/config.rs, then run UPDATE_DOCS=1 cargo test -p tec-gateway --test config_docs -->";
const FIELDS_END: &str = "<!-- END generated configuration table -->";
const ENV_BEGIN: &str = "<!-- BEGIN generated environment table: edit config::ENV_VARS, then run UPDATE_DOCS=1 cargo test -p tec-gateway --test config_docs -->";
const ENV_END: &str = "<!-- END generated environment table -->";
/// The one variable that names no field: it says where the file is.
const CONFIG_FILE_VAR: &str = "TEC_GATEWAY_CONFIG";

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// Every leaf of the configuration as (dotted TOML path, default value), in declaration order.
fn config_fields() -> Vec<(String, Value)> {
    fn walk(prefix: &str, node: Node, out: &mut Vec<(String, Value)>) {
        match node {
            Node::Table(entries) => {
                for (key, child) in entries {
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            Node::Leaf(value) => out.push((prefix.to_owned(), value)),
        }
    }
    // Through the JSON text, which keeps the fields in declaration order (serde_json's
    // `Value` would sort them).
    let text = serde_json::to_string(&Config::documented_defaults()).unwrap();
    let mut fields = Vec::new();
    walk("", serde_json::from_str(&text).unwrap(), &mut fields);
    fields
}

/// A configuration value as serialised: a table of fields in their order, or a leaf.
enum Node {
    Table(Vec<(String, Node)>),
    Leaf(Value),
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> serde::de::Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a configuration value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Node>()? {
                    entries.push((key, value));
                }
                Ok(Node::Table(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(Node::Leaf(Value::Array(items)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Leaf(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Leaf(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Leaf(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Leaf(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Leaf(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf(Value::Null))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// The environment variable that overrides `path`: `ENV_VARS` describes each by the field
/// it sets, optionally followed by a remark.
fn env_var_for(path: &str) -> Option<&'static str> {
    ENV_VARS
        .iter()
        .find(|(_, what)| what.split_whitespace().next() == Some(path))
        .map(|(var, _)| *var)
}

fn default_text(value: &Value) -> String {
    match value {
        Value::Null => "none".to_owned(),
        Value::String(text) => format!("`{text}`"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            format!("`[{}]`", items.join(", "))
        }
        other => format!("`{other}`"),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn fields_table() -> Result<String, Vec<String>> {
    let mut missing = Vec::new();
    let mut table = String::from("| field | environment | default | meaning |\n|---|---|---|---|\n");
    for (path, default) in config_fields() {
        let Some(doc) = FIELD_DOCS.iter().find(|doc| doc.path == path) else {
            missing.push(path);
            continue;
        };
        let env = env_var_for(&path).map(|var| format!("`{var}`")).unwrap_or_default();
        table.push_str(&format!(
            "| `{path}` | {env} | {} | {} |\n",
            cell(&default_text(&default)),
            cell(doc.meaning)
        ));
    }
    if missing.is_empty() { Ok(table) } else { Err(missing) }
}

fn env_table() -> String {
    let mut table = String::from("| variable | overrides |\n|---|---|\n");
    let fields: Vec<String> = config_fields().into_iter().map(|(path, _)| path).collect();
    for (var, what) in ENV_VARS {
        // The field it overrides as code, the remark as text.
        let what = match what.split_once(' ') {
            Some((field, remark)) if fields.iter().any(|f| f == field) => format!("`{field}` {remark}"),
            _ if fields.iter().any(|f| f == what) => format!("`{what}`"),
            _ => (*what).to_owned(),
        };
        table.push_str(&format!("| `{var}` | {} |\n", cell(&what)));
    }
    table
}

/// Replaces what lies between `begin` and `end` in `text`.
fn splice(text: &str, begin: &str, end: &str, body: &str) -> String {
    let start = text
        .find(begin)
        .unwrap_or_else(|| panic!("gateway/README.md has lost the marker line {begin:?}"))
        + begin.len();
    let stop = start
        + text[start..]
            .find(end)
            .unwrap_or_else(|| panic!("gateway/README.md has lost the marker line {end:?}"));
    format!("{}\n{body}{}", &text[..start], &text[stop..])
}

/// A line diff (longest common subsequence; the texts are a few dozen lines).
fn diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", new[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", old[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn every_config_field_has_a_meaning_written_down() {
    if let Err(missing) = fields_table() {
        let entries: Vec<String> = missing
            .iter()
            .map(|path| format!("    FieldDoc {{ path: \"{path}\", meaning: \"...\" }},"))
            .collect();
        panic!(
            "configuration fields without documentation: {missing:?}\n\
             add to FIELD_DOCS at the end of gateway/src/config.rs:\n{}\n\
             then run: {REGENERATE}",
            entries.join("\n")
        );
    }
}

#[test]
fn every_documentation_entry_names_a_field_once() {
    let fields: Vec<String> = config_fields().into_iter().map(|(path, _)| path).collect();
    let stale: Vec<&str> = FIELD_DOCS
        .iter()
        .map(|doc| doc.path)
        .filter(|path| !fields.iter().any(|field| field == path))
        .collect();
    assert!(
        stale.is_empty(),
        "FIELD_DOCS in gateway/src/config.rs documents fields that do not exist: {stale:?}"
    );
    for (index, doc) in FIELD_DOCS.iter().enumerate() {
        assert!(
            !FIELD_DOCS[..index].iter().any(|earlier| earlier.path == doc.path),
            "FIELD_DOCS documents {} twice",
            doc.path
        );
        assert!(
            !doc.meaning.trim().is_empty() && !doc.meaning.contains('\n'),
            "FIELD_DOCS: the meaning of {} must be one non-empty line",
            doc.path
        );
    }
}

#[test]
fn every_environment_variable_overrides_a_field() {
    let fields: Vec<String> = config_fields().into_iter().map(|(path, _)| path).collect();
    for (var, what) in ENV_VARS.iter().filter(|(var, _)| *var != CONFIG_FILE_VAR) {
        let target = what.split_whitespace().next().unwrap_or_default();
        assert!(
            fields.iter().any(|field| field == target),
            "config::ENV_VARS: {var} must be described by the field it overrides first \
             (e.g. \"ingest.max_batch\"), not {what:?}"
        );
    }
}

#[test]
fn every_alert_setting_shows_the_engines_default() {
    // Left out, an `alerts.*` setting means the engine's default; the table must show it.
    let unfilled: Vec<String> = config_fields()
        .into_iter()
        .filter(|(path, default)| path.starts_with("alerts.") && default.is_null())
        .map(|(path, _)| path)
        .collect();
    assert!(
        unfilled.is_empty(),
        "alert settings without a documented default: {unfilled:?}; fill them from the engine's \
         defaults in AlertsConfig::from_engine (gateway/src/config.rs), then run: {REGENERATE}"
    );
}

#[test]
fn documented_alert_defaults_are_the_engines() {
    let documented = Config::documented_defaults().alerts.engine_config().unwrap();
    assert_eq!(
        format!("{documented:?}"),
        format!("{:?}", gateway::alerts::EngineConfig::default()),
        "AlertsConfig::from_engine (gateway/src/config.rs) misdescribes the engine's defaults"
    );
}

#[test]
fn readme_configuration_tables_match_the_code() {
    let fields = fields_table().unwrap_or_else(|missing| {
        panic!("undocumented fields {missing:?}: see every_config_field_has_a_meaning_written_down")
    });
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).unwrap();
    let generated = splice(&readme, FIELDS_BEGIN, FIELDS_END, &fields);
    let generated = splice(&generated, ENV_BEGIN, ENV_END, &env_table());
    if generated == readme {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    panic!(
        "gateway/README.md's configuration tables differ from the code \
         (- README, + code):\n{}\nregenerate them with: {REGENERATE}",
        diff(&readme, &generated)
    );
}
