//! Tidy checks: the architecture's invariants that a test can check by reading the source, so
//! that `docs/architecture.md` stays true without anyone remembering to look (as
//! rust-analyzer's tidy tests do).

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    crate_dir().parent().expect("the workspace").to_owned()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn src(sub: &str) -> PathBuf {
    crate_dir().join("src").join(sub)
}

/// Lines of code (comments dropped) in `file` that contain any of `needles`.
fn offending_lines(file: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("a source file");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| needles.iter().any(|n| line.contains(n)))
        .map(|(i, line)| format!("{}:{}: {}", file.display(), i + 1, line.trim()))
        .collect()
}

/// Asserts no file under `dir` (minus `except`) has a line with any of `needles`.
fn assert_absent(dir: &Path, except: &[&str], needles: &[&str], rule: &str) {
    let found: Vec<String> = rust_files(dir)
        .iter()
        .filter(|f| !except.iter().any(|e| f.starts_with(src(e))))
        .flat_map(|f| offending_lines(f, needles))
        .collect();
    assert!(found.is_empty(), "{rule}:\n{}", found.join("\n"));
}

#[test]
fn the_session_core_knows_no_concrete_backend() {
    assert_absent(
        &src("session"),
        &[],
        &[
            "LocalBackend",
            "SerialBackend",
            "SshBackend",
            "SpawnError",
            "OpenError",
            "ConnectError",
            "backend::local",
            "backend::serial",
            "backend::ssh",
        ],
        "session/ gets backends only through backend::open (Backend, BackendError)",
    );
}

#[test]
fn the_session_core_knows_no_json_rpc_and_no_sql() {
    assert_absent(
        &src("session"),
        &[],
        &["jsonrpsee", "rusqlite", "crate::rpc", "crate::store"],
        "session/ knows nothing of the RPC layer or the store",
    );
}

#[test]
fn only_rpc_knows_jsonrpsee() {
    assert_absent(
        &src(""),
        &["rpc"],
        &["jsonrpsee::", "use jsonrpsee"],
        "only rpc/ may use jsonrpsee",
    );
}

#[test]
fn only_store_knows_sql() {
    assert_absent(
        &src(""),
        &["store"],
        &["rusqlite"],
        "only store/ may use rusqlite",
    );
}

#[test]
fn the_store_knows_no_wire_types() {
    assert_absent(
        &src("store"),
        &[],
        &["pulsar_protocol"],
        "store/ has its own row types; the wire types are not the database format",
    );
}

#[test]
fn backends_know_nothing_about_clients_sessions_or_the_store() {
    assert_absent(
        &src("backend"),
        &[],
        &[
            "crate::session",
            "crate::rpc",
            "crate::store",
            "crate::persist",
        ],
        "backend/ knows nothing about clients or sessions",
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let missing: Vec<String> = rust_files(&src(""))
        .into_iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .expect("a source file")
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_api_boundaries_depend_on_nothing_in_the_workspace() {
    for boundary in [
        "pulsar-protocol",
        "orbit-api-stub",
        "pulsar-term",
        "pulsar-keeper",
    ] {
        let manifest =
            std::fs::read_to_string(workspace_dir().join(boundary).join("Cargo.toml")).unwrap();
        for member in [
            "pulsar-ext",
            "pulsar-cli",
            "pulsar-standalone",
            "pulsar-e2e",
        ] {
            assert!(
                !manifest.contains(member),
                "{boundary} must not depend on {member}"
            );
        }
    }
    let cli = std::fs::read_to_string(workspace_dir().join("pulsar-cli/Cargo.toml")).unwrap();
    assert!(
        !cli.contains("pulsar-ext"),
        "the CLI depends on pulsar-protocol only"
    );
}

#[test]
fn the_architecture_doc_links_nothing_outside_the_repository() {
    let doc = std::fs::read_to_string(workspace_dir().join("docs/architecture.md")).unwrap();
    for (i, line) in doc.lines().enumerate() {
        assert!(
            !line.contains("](http") && !line.contains("](../") && !line.contains("../shared"),
            "docs/architecture.md:{}: links outside the repository: {line}",
            i + 1
        );
    }
}

#[test]
fn every_file_the_architecture_doc_names_exists() {
    let doc = std::fs::read_to_string(workspace_dir().join("docs/architecture.md")).unwrap();
    let all: Vec<PathBuf> = [
        "pulsar-ext",
        "pulsar-cli",
        "pulsar-protocol",
        "pulsar-keeper",
        "pulsar-term",
        "orbit-api-stub",
        "pulsar-standalone",
        "tests",
    ]
    .iter()
    .flat_map(|dir| rust_files(&workspace_dir().join(dir)))
    .collect();
    let mut missing = Vec::new();
    for name in doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.ends_with(".rs") && !word.contains(' '))
    {
        if !all.iter().any(|f| f.ends_with(name)) {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/architecture.md names files that do not exist: {missing:?}"
    );
}

/// Codes documented without a test in `tests/tests/errors.rs`, and why none can have one.
const UNTRIGGERABLE_CODES: &[(i32, &str)] = &[(
    -32603,
    "an internal error is a bug: no request should cause one",
)];

/// The codes in the first column of docs/protocol.md's error table (its `## Errors` section).
fn documented_codes(doc: &str) -> Vec<i32> {
    let section = doc
        .split_once("\n## Errors\n")
        .expect("docs/protocol.md has an `## Errors` section")
        .1;
    let section = section.split_once("\n## ").map_or(section, |(s, _)| s);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|rest| rest.split_once(" |"))
        .filter_map(|(first, _)| first.trim().parse().ok())
        .collect()
}

/// `(name, value)` of every `pub const NAME: i32 = value;` in pulsar-protocol/src/error.rs.
fn defined_codes(source: &str) -> Vec<(String, i32)> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("pub const "))
        .filter_map(|rest| rest.split_once(": i32 = "))
        .map(|(name, value)| {
            let value = value.trim().trim_end_matches(';');
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("error.rs: {name} = {value} is not a number"));
            (name.to_owned(), value)
        })
        .collect()
}

/// The codes that have a `fn code_<N>_...` (`code_minus_<N>_` for a negative one) test.
fn tested_codes(tests: &str) -> Vec<i32> {
    tests
        .split("fn code_")
        .skip(1)
        .filter_map(|rest| {
            let (sign, rest) = match rest.strip_prefix("minus_") {
                Some(rest) => (-1, rest),
                None => (1, rest),
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let after = &rest[digits.len()..];
            (after.starts_with('_') && !digits.is_empty())
                .then(|| sign * digits.parse::<i32>().expect("digits"))
        })
        .collect()
}

#[test]
fn every_error_code_is_defined_documented_and_tested_in_errors_rs() {
    let root = workspace_dir();
    let defined =
        defined_codes(&std::fs::read_to_string(root.join("pulsar-protocol/src/error.rs")).unwrap());
    let documented =
        documented_codes(&std::fs::read_to_string(root.join("docs/protocol.md")).unwrap());
    let tested =
        tested_codes(&std::fs::read_to_string(root.join("tests/tests/errors.rs")).unwrap());
    assert!(
        documented.len() > 30 && defined.len() > 30,
        "the parsers found too few codes ({} documented, {} defined): has the table's layout \
         or error.rs's changed?",
        documented.len(),
        defined.len()
    );
    let mut problems = Vec::new();
    for code in &documented {
        if !defined.iter().any(|(_, value)| value == code) {
            problems.push(format!(
                "{code} is in docs/protocol.md's error table but pulsar-protocol/src/error.rs \
                 defines no such code: define it there (`pub const NAME: i32 = {code};`) or \
                 drop the row"
            ));
        }
        if documented.iter().filter(|c| *c == code).count() > 1 {
            problems.push(format!(
                "{code} has more than one row in docs/protocol.md's error table: merge them"
            ));
        }
        let untriggerable = UNTRIGGERABLE_CODES.iter().any(|(c, _)| c == code);
        if !untriggerable && !tested.contains(code) {
            let name = if *code < 0 {
                format!("code_minus_{}", code.unsigned_abs())
            } else {
                format!("code_{code}")
            };
            problems.push(format!(
                "{code} is documented but tests/tests/errors.rs has no `fn {name}_<what_triggers_it>`: \
                 add a test that triggers it over the socket and checks the code and its whole \
                 `data` against the table"
            ));
        }
    }
    for (name, value) in &defined {
        if !documented.contains(value) {
            problems.push(format!(
                "{name} ({value}) is defined in pulsar-protocol/src/error.rs but has no row in \
                 docs/protocol.md's error table: add one (code, name, when, `data` fields)"
            ));
        }
    }
    for code in &tested {
        if !documented.contains(code) {
            problems.push(format!(
                "tests/tests/errors.rs tests {code}, which docs/protocol.md's error table does \
                 not document: add its row, or rename or drop the test"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
