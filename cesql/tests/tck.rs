//! The CloudEvents SQL conformance suite (testdata/tck): every case of
//! every file.

use std::path::Path;

use bytes::Bytes;
use ferry_cesql::{ErrorKind, Expression, Value};
use ferry_event::{json, Event};
use serde_json::{json, Map, Value as Json};

fn event(case: &Json) -> Event {
    let mut object: Map<String, Json> = match case.get("event") {
        Some(Json::Object(e)) => e.clone(),
        _ => json!({"specversion": "1.0", "id": "myId", "source": "localhost.localdomain", "type": "myType"})
            .as_object()
            .cloned()
            .expect("an object"),
    };
    if let Some(Json::Object(overrides)) = case.get("eventOverrides") {
        object.extend(overrides.clone());
    }
    json::decode(Bytes::from(serde_json::to_vec(&object).expect("JSON"))).expect("a valid event")
}

fn expected_value(result: &Json) -> Value {
    match result {
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Integer(n.as_i64().expect("an integer") as i32),
        Json::String(s) => Value::String(s.clone()),
        other => panic!("unexpected result {other}"),
    }
}

fn kind(name: &str) -> ErrorKind {
    match name {
        "math" => ErrorKind::Math,
        "cast" => ErrorKind::Cast,
        "missingAttribute" => ErrorKind::MissingAttribute,
        "missingFunction" => ErrorKind::MissingFunction,
        "functionEvaluation" => ErrorKind::FunctionEvaluation,
        other => panic!("unknown error kind {other}"),
    }
}

#[test]
fn every_tck_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tck");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut passed, mut failures) = (0, Vec::new());
    for file in &files {
        let suite: Json = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for case in suite["tests"].as_array().unwrap() {
            let name = format!(
                "{}: {}",
                file.file_name().unwrap().to_string_lossy(),
                case["name"]
            );
            // YAML reads `TRUE` or `0` as scalars; their text is the expression.
            let expression = match &case["expression"] {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            let expression = expression.as_str();
            let error = case.get("error").and_then(Json::as_str);
            let outcome = match (Expression::parse(expression), error) {
                (Err(_), Some("parse")) => Ok(()),
                (Err(e), _) => Err(format!("parse failed: {e}")),
                (Ok(_), Some("parse")) => Err("parsed, expected a parse error".into()),
                (Ok(expr), error) => {
                    let (value, got_error) = expr.evaluate(&event(case));
                    let want_error = error.map(kind);
                    let want_value = case.get("result").map(expected_value);
                    if got_error != want_error {
                        Err(format!(
                            "error {got_error:?}, expected {want_error:?} (value {value:?})"
                        ))
                    } else if want_value.is_some_and(|w| w != value) {
                        Err(format!("value {value:?}, expected {:?}", case["result"]))
                    } else {
                        Ok(())
                    }
                }
            };
            match outcome {
                Ok(()) => passed += 1,
                Err(why) => failures.push(format!("{name} `{expression}`: {why}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} passed, {} failed:\n{}",
        passed,
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, 275, "the TCK has 275 cases");
}
