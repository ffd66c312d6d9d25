//! The table of actions (`callflow_scenario::schema`) is what the readers, the docs and the web UI
//! go by.

use callflow_scenario::schema::{self, ACTIONS, Kind};

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scenario-format.md");
    std::fs::read_to_string(path).expect("docs/scenario-format.md")
}

#[test]
fn the_docs_key_table_is_the_schema() {
    let text = docs();
    let begin = "<!-- keys: generated from crates/scenario/src/schema.rs -->\n";
    let end = "<!-- keys end -->";
    let start = text.find(begin).expect("the key table's begin marker") + begin.len();
    let stop = text[start..].find(end).expect("the key table's end marker") + start;
    let want = schema::markdown();
    assert!(
        text[start..stop] == want,
        "docs/scenario-format.md's key table differs from the schema; put this between the markers:\n{want}"
    );
}

#[test]
fn every_option_the_docs_name_is_a_key_of_the_schema() {
    let text = docs();
    let table = text
        .split("### Options some nodes take")
        .nth(1)
        .and_then(|t| t.split("\n\n").nth(1))
        .expect("the options table");
    for row in table.lines().skip(2) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for key in first.split('`').skip(1).step_by(2) {
            let known = schema::COMMON
                .iter()
                .chain(ACTIONS.iter().flat_map(|s| s.keys))
                .any(|k| k.yaml == key || k.json == key);
            assert!(known, "the docs name option `{key}`, which no node takes");
        }
    }
}

#[test]
fn every_command_and_event_the_docs_describe_is_in_the_schema_and_back() {
    let text = docs();
    for s in ACTIONS {
        assert!(
            text.contains(&format!("| `{}`", s.name)) || text.contains(&format!("/ `{}`", s.name)),
            "{} is not described in docs/scenario-format.md",
            s.name
        );
    }
}

/// A step of this action and no keys: YAML text for one instance calling another.
fn lone_step(kind: Kind, name: &str) -> String {
    let key = match kind {
        Kind::Command => "command",
        Kind::Event => "event",
    };
    format!(
        "name: t\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - event: INCOMING\n      - {key}: {name}\n  bob:\n    dn: \"200\"\n    steps:\n      - command: MakeCall\n        target: \"100\"\n"
    )
}

#[test]
fn a_node_without_a_required_key_is_refused_at_its_line() {
    for s in ACTIONS.iter().filter(|s| s.keys.iter().any(|k| k.required)) {
        let err = callflow_scenario::parse_str(&lone_step(s.kind, s.name), "t.yaml")
            .expect_err(s.name)
            .to_string();
        assert!(err.contains("t.yaml:7:9"), "{}: {err}", s.name);
    }
}

#[test]
fn a_key_of_another_command_is_refused_in_both_formats() {
    let yaml = "name: t\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: \"200\"\n        digits: \"12\"\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n";
    let err = callflow_scenario::parse_str(yaml, "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.yaml:8:9: error: `digits` is a key of SendDTMF, not of MakeCall"),
        "{err}"
    );
    let json = r#"{"nodes": [
  {"id": "a", "type": "sipInstance", "data": {"dn": "100", "register": false}},
  {"id": "b", "type": "sipInstance", "data": {"dn": "200", "register": false}},
  {"id": "c", "type": "command", "data": {"command": "MakeCall", "sipInstanceId": "a", "targetUri": "200",
    "digits": "", "intervalMs": 250}},
  {"id": "d", "type": "event", "data": {"event": "INCOMING", "sipInstanceId": "b"}}
], "edges": []}"#;
    let err = callflow_scenario::parse_str(json, "t.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.json:5:19: error: `intervalMs` is a key of SendDTMF, not of MakeCall"),
        "{err}"
    );
    // sipflow's editor leaves empty fields of other commands behind: those are let be.
    assert!(!err.contains("`digits`"), "{err}");
}

#[test]
fn the_schema_as_json_lists_every_action_with_typed_keys() {
    let j = schema::to_json();
    let make = j["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "MakeCall")
        .unwrap();
    let redirects = make["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["yaml"] == "redirects")
        .unwrap();
    assert_eq!(redirects["type"], "int");
    assert_eq!(redirects["default"], 3);
    let until = make["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["yaml"] == "until")
        .unwrap();
    assert_eq!(
        until["choices"],
        serde_json::json!(["answer", "ringing", "sent"])
    );
    assert_eq!(
        j["commands"].as_array().unwrap().len() + j["events"].as_array().unwrap().len(),
        ACTIONS.len()
    );
}
