//! docs/json.md against the real output: the tables there (one per kind of JSON object, each
//! after `<!-- json COMMAND: PATH -->` lines naming where its objects are) are parsed here, every
//! command with `--json` is run against a SoftHSM2 test token (`readers` against a pcscd of the
//! test's own with vpcd's virtual readers), and every object found at each path must have
//! exactly the documented fields, each with the documented type. So neither the output nor the
//! page can change without the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{SAMPLE, TestToken, fixture, path_str, report, root};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

/// The names docs/json.md uses for the JSON documents, one per command (and mode).
const DOCUMENTS: &[&str] = &[
    "tokens",
    "readers",
    "certs",
    "doctor",
    "inspect",
    "verify",
    "decrypt",
    "decrypt-unwrap",
    "decrypt-batch",
    "sign",
    "encrypt",
    "agent-status",
];

/// A documented type: `string`, `integer`, `boolean`, `object`, `array of strings`,
/// `array of objects` or `one of "a", "b"`, each optionally `... or null`.
#[derive(Debug, Clone, PartialEq)]
enum Base {
    String,
    Integer,
    Boolean,
    Object,
    Strings,
    Objects,
    OneOf(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Type {
    base: Base,
    nullable: bool,
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: Type,
    /// The type as the table writes it, for messages.
    ty_text: String,
}

/// One table: the (document, path) pairs it describes and its fields.
#[derive(Debug)]
struct Table {
    line: usize,
    targets: Vec<(String, String)>,
    fields: Vec<Field>,
}

fn parse_type(text: &str) -> Result<Type, String> {
    let (base, nullable) = match text.strip_suffix(" or null") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let base = match base {
        "string" => Base::String,
        "integer" => Base::Integer,
        "boolean" => Base::Boolean,
        "object" => Base::Object,
        "array of strings" => Base::Strings,
        "array of objects" => Base::Objects,
        other => {
            let values = other
                .strip_prefix("one of ")
                .ok_or_else(|| format!("unknown type {text:?}"))?;
            let values = values
                .split(", ")
                .map(|v| {
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .map(str::to_string)
                        .ok_or_else(|| format!("in {text:?}: {v:?} is not a quoted value"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Base::OneOf(values)
        }
    };
    Ok(Type { base, nullable })
}

/// The tables of docs/json.md that follow `<!-- json DOCUMENT: PATH -->` lines.
fn parse_doc(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut tables = Vec::new();
    let mut targets = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(marker) = line
            .strip_prefix("<!-- json ")
            .and_then(|m| m.strip_suffix("-->"))
        {
            let (document, path) = marker
                .split_once(':')
                .unwrap_or_else(|| panic!("docs/json.md:{}: no ':' in {line:?}", i + 1));
            targets.push((document.trim().to_string(), path.trim().to_string()));
            i += 1;
            continue;
        }
        if targets.is_empty() {
            i += 1;
            continue;
        }
        assert!(
            line.starts_with("| field | type |"),
            "docs/json.md:{}: a json marker must be followed by a `| field | type | meaning |` table, found {line:?}",
            i + 1
        );
        let start = i;
        i += 2; // the header and the separator
        let mut fields = Vec::new();
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            let cells: Vec<&str> = lines[i].split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "docs/json.md:{}: short row", i + 1);
            let name = cells[1].trim_matches('`').to_string();
            let ty = parse_type(cells[2]).unwrap_or_else(|e| panic!("docs/json.md:{}: {e}", i + 1));
            fields.push(Field {
                name,
                ty,
                ty_text: cells[2].to_string(),
            });
            i += 1;
        }
        assert!(
            !fields.is_empty(),
            "docs/json.md:{}: empty table",
            start + 1
        );
        tables.push(Table {
            line: start + 1,
            targets: std::mem::take(&mut targets),
            fields,
        });
    }
    assert!(
        targets.is_empty(),
        "docs/json.md ends with a marker and no table"
    );
    tables
}

fn doc_tables() -> Vec<Table> {
    let path = root().join("docs/json.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_doc(&text)
}

/// The values at `path` in `doc` (`.` the document, `[]` each element, `name` a field,
/// `[key=value]` the elements whose `key` is "value"), and the `key` of a filter on the last
/// step (a field every selected object has beyond the table's, documented or not).
fn select<'v>(doc: &'v Value, path: &str) -> (Vec<&'v Value>, Option<String>) {
    let mut current = vec![doc];
    let mut tag = None;
    if path == "." {
        return (current, tag);
    }
    for step in path.split('.') {
        tag = None;
        let (name, bracket) = match step.find('[') {
            Some(i) => {
                let inner = step[i + 1..]
                    .strip_suffix(']')
                    .unwrap_or_else(|| panic!("bad path step {step:?} in {path:?}"));
                (&step[..i], Some(inner))
            }
            None => (step, None),
        };
        if !name.is_empty() {
            current = current.into_iter().filter_map(|v| v.get(name)).collect();
        }
        if let Some(filter) = bracket {
            let elements = current.into_iter().filter_map(Value::as_array).flatten();
            current = match filter.split_once('=') {
                None => elements.collect(),
                Some((key, value)) => {
                    tag = Some(key.to_string());
                    elements.filter(|e| e[key] == value).collect()
                }
            };
        }
    }
    (current, tag)
}

fn check_value(value: &Value, ty: &Type) -> Result<(), String> {
    if value.is_null() {
        return if ty.nullable {
            Ok(())
        } else {
            Err("is null".into())
        };
    }
    let ok = match &ty.base {
        Base::String => value.is_string(),
        Base::Integer => value.is_u64(),
        Base::Boolean => value.is_boolean(),
        Base::Object => value.is_object(),
        Base::Strings => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        Base::Objects => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_object)),
        Base::OneOf(values) => value
            .as_str()
            .is_some_and(|s| values.iter().any(|v| v == s)),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("is {value}"))
    }
}

/// Every table naming one of `outputs`' documents, checked against every object at its path;
/// returns the problems found, one line each.
fn check_tables(tables: &[Table], outputs: &BTreeMap<&str, Vec<Value>>) -> Vec<String> {
    let mut problems = Vec::new();
    for table in tables {
        for (document, path) in &table.targets {
            let Some(runs) = outputs.get(document.as_str()) else {
                continue;
            };
            let where_ = format!("docs/json.md:{} ({document}: {path})", table.line);
            let mut seen = 0;
            for run in runs {
                let (objects, tag) = select(run, path);
                for object in objects {
                    seen += 1;
                    let Some(map) = object.as_object() else {
                        problems.push(format!("{where_}: {object} is not an object"));
                        continue;
                    };
                    for field in &table.fields {
                        match map.get(&field.name) {
                            None => problems.push(format!(
                                "{where_}: field `{}` is missing from {object}",
                                field.name
                            )),
                            Some(v) => {
                                if let Err(e) = check_value(v, &field.ty) {
                                    problems.push(format!(
                                        "{where_}: `{}` {e}, documented as {}",
                                        field.name, field.ty_text
                                    ));
                                }
                            }
                        }
                    }
                    for key in map.keys() {
                        let documented = table.fields.iter().any(|f| &f.name == key);
                        if !documented && tag.as_ref() != Some(key) {
                            problems.push(format!(
                                "{where_}: the output has field `{key}`, which the table does not list"
                            ));
                        }
                    }
                }
            }
            if seen == 0 {
                problems.push(format!(
                    "{where_}: no object there in any output; the test does not exercise this table"
                ));
            }
        }
    }
    problems
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "docs/json.md and the --json output differ:\n{}",
        problems.join("\n")
    );
}

/// The JSON on stdout of a run that exited with one of `codes`.
fn json(out: &Output, codes: &[i32], what: &str) -> Value {
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "{what}: exit code not in {codes:?}: {}",
        report(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {}", report(out)))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn the_doc_names_every_json_document_and_only_those() {
    let named: BTreeSet<String> = doc_tables()
        .into_iter()
        .flat_map(|t| t.targets.into_iter().map(|(d, _)| d))
        .collect();
    let known: BTreeSet<String> = DOCUMENTS.iter().map(|d| d.to_string()).collect();
    assert_eq!(named, known, "docs/json.md's documents vs this test's");
}

/// Every subcommand whose help offers --json has a document of its name in docs/json.md.
#[test]
fn every_command_with_json_is_documented() {
    let help = Command::new(env!("CARGO_BIN_EXE_p11smime"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"decrypt"), "{help}");
    for command in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_p11smime"))
            .args([command, "--help"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("--json") {
            assert!(
                DOCUMENTS.contains(&command),
                "`{command}` has --json but docs/json.md does not document it"
            );
        }
    }
}

#[test]
fn the_type_grammar() {
    assert_eq!(
        parse_type("one of \"CAC\", \"PIV\" or null").unwrap(),
        Type {
            base: Base::OneOf(vec!["CAC".into(), "PIV".into()]),
            nullable: true
        }
    );
    assert!(parse_type("number").is_err());
    let t = parse_type("array of strings").unwrap();
    assert!(check_value(&serde_json::json!(["a"]), &t).is_ok());
    assert!(check_value(&serde_json::json!([1]), &t).is_err());
    assert!(check_value(&Value::Null, &t).is_err());
    let doc = serde_json::json!([{"layer": "a", "x": [{"y": 1}]}, {"layer": "b"}]);
    let (found, tag) = select(&doc, "[layer=a].x[]");
    assert_eq!(found, vec![&serde_json::json!({"y": 1})]);
    assert_eq!(tag, None);
    let (found, tag) = select(&doc, "[layer=b]");
    assert_eq!(found.len(), 1);
    assert_eq!(tag.as_deref(), Some("layer"));
}

/// Everything but `readers`, against one SoftHSM2 token.
#[test]
fn token_commands_match_the_doc() {
    let token = TestToken::new();
    let ca = fixture("ca.pem");
    let ca = path_str(&ca);
    let bob = fixture("bob-enc.pem");
    let bob = path_str(&bob);
    let p = |name: &str| token.path(name).to_str().unwrap().to_string();
    // With a From, verify reports `from` and `from_matches`.
    let mut mail =
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: json\r\n".to_vec();
    mail.extend_from_slice(SAMPLE);
    let plain = token.write("plain.eml", &mail);
    let plain = path_str(&plain);
    let pin = ["--pin", "env:TEST_PIN"];
    let trust = ["--ca", ca, "--no-system-ca"];
    let mut outputs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut add = |document: &'static str, value: Value| {
        outputs.entry(document).or_default().push(value);
    };

    let out = run(&mut token.p11smime(&["tokens", "--json"]));
    add("tokens", json(&out, &[0], "tokens"));
    let out = run(&mut token.p11smime(&["certs", "--json"]));
    add("certs", json(&out, &[0], "certs"));
    let out = run(&mut token.p11smime(&[&["doctor", "--json"][..], &trust].concat()));
    // Exit 6 if a step has a problem: the report is the JSON either way.
    add("doctor", json(&out, &[0, 6], "doctor"));

    // To bob and (the self copy) to alice's key-management certificate on the token.
    let enc = p("enc.eml");
    let out = run(&mut token.p11smime(&["encrypt", "-r", bob, "-o", &enc, "--json", plain]));
    add("encrypt", json(&out, &[0], "encrypt"));
    let signed = p("signed.eml");
    let out =
        run(&mut token.p11smime(&[&["sign", "-o", &signed, "--json", plain][..], &pin].concat()));
    add("sign", json(&out, &[0], "sign"));

    let out =
        run(&mut token
            .p11smime(&[&["verify", "--offline", "--json", &signed][..], &trust].concat()));
    add("verify", json(&out, &[0], "verify"));
    for message in [&enc, &signed] {
        let out = run(&mut token.p11smime(&[&["inspect", "--json", message][..], &trust].concat()));
        add("inspect", json(&out, &[0], "inspect"));
    }

    let dec = p("dec.eml");
    let out =
        run(&mut token.p11smime(&[&["decrypt", "-o", &dec, "--json", &enc][..], &pin].concat()));
    add("decrypt", json(&out, &[0], "decrypt"));

    let signed_enc = p("signed-enc.eml");
    let out = run(&mut token.p11smime(
        &[
            &["encrypt", "--sign", "-r", bob, "-o", &signed_enc, plain][..],
            &pin,
        ]
        .concat(),
    ));
    assert!(out.status.success(), "encrypt --sign: {}", report(&out));
    let unwrapped = p("unwrapped.eml");
    let out = run(&mut token.p11smime(
        &[
            &[
                "decrypt",
                "--unwrap",
                "-o",
                &unwrapped,
                "--json",
                &signed_enc,
            ][..],
            &trust,
            &pin,
        ]
        .concat(),
    ));
    add("decrypt-unwrap", json(&out, &[0], "decrypt --unwrap"));

    // One decrypted, one copied (not encrypted), one failed (for bob only): exit 8.
    let for_bob = p("for-bob.eml");
    let out = run(&mut token.p11smime(&["encrypt", "--no-self", "-r", bob, "-o", &for_bob, plain]));
    assert!(out.status.success(), "encrypt --no-self: {}", report(&out));
    let out_dir = p("batch");
    let out = run(&mut token.p11smime(
        &[
            &[
                "decrypt",
                "--out-dir",
                &out_dir,
                "--json",
                &enc,
                plain,
                &for_bob,
            ][..],
            &pin,
        ]
        .concat(),
    ));
    add("decrypt-batch", json(&out, &[8], "decrypt --out-dir"));

    run(&mut token.p11smime(&[&["agent", "start"][..], &pin].concat()));
    let out = run(&mut token.p11smime(&["agent", "status", "--json"]));
    add("agent-status", json(&out, &[0], "agent status"));
    run(&mut token.p11smime(&["agent", "stop"]));

    let tables = doc_tables();
    let problems = check_tables(&tables, &outputs);
    assert_no_problems(&problems);
    let run_documents: BTreeSet<&str> = outputs.keys().copied().collect();
    let expected: BTreeSet<&str> = DOCUMENTS
        .iter()
        .copied()
        .filter(|d| *d != "readers")
        .collect();
    assert_eq!(run_documents, expected);
}

/// `readers`, against a pcscd of the test's own showing vpcd's two (empty) virtual readers.
#[cfg(target_os = "linux")]
#[test]
fn readers_matches_the_doc() {
    use common::pcsc::{Pcscd, virtual_readers};
    let mut pcscd = Pcscd::start(true);
    let list = pcscd.readers_when("the virtual readers", |l| virtual_readers(l).len() >= 2);
    let mut outputs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    outputs.insert("readers", vec![Value::Array(list)]);
    assert_no_problems(&check_tables(&doc_tables(), &outputs));
}
