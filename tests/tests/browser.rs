//! The desktop's terminal in a real browser: headless Chromium (driven by playwright-core)
//! loads a page that does what `PulsarTerminal.tsx` does (xterm.js, a WebSocket to the
//! desktop port, each frame base64-decoded into the terminal) and shows the session's screen;
//! typing into it reaches the shell; the same page from a foreign origin is refused.
//!
//! Needs `node`, Chromium and `npm ci` in `tests/browser` (scripts/test sets them up). Without
//! them it is skipped with a note, except under `CI=true`, where that is a failure.

use std::path::PathBuf;
use std::process::Command;

use pulsar_e2e::desktop::desktop_port;
use pulsar_e2e::*;
use serde_json::{Value, json};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// True when the browser can run; false (skip) when it cannot, or a panic under CI.
fn browser_available() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok();
    let modules = browser_dir().join("node_modules/playwright-core").is_dir()
        && browser_dir().join("node_modules/@xterm/xterm").is_dir();
    let missing: Vec<&str> = [
        (!node).then_some("node"),
        (!chromium().exists()).then_some("chromium"),
        (!modules).then_some("npm ci in tests/browser"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the browser test cannot run: missing {missing:?}");
    }
    eprintln!("skipping the browser test: missing {missing:?}");
    false
}

#[tokio::test]
async fn the_desktop_terminal_page_shows_the_session_and_types_into_it_and_foreign_pages_are_refused()
 {
    if !browser_available() {
        return;
    }
    let ws_port = desktop_port();
    let allowed_port = desktop_port();
    let foreign_port = desktop_port();
    let origins = format!("[\"http://127.0.0.1:{allowed_port}\"]");
    let daemon = Daemon::start_with(&[
        ("DESKTOP_WEBSOCKET", &format!("127.0.0.1:{ws_port}")),
        ("DESKTOP_WEBSOCKET_ORIGINS", &origins),
    ])
    .await;
    let mut line = daemon.line().await;
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh"], "env": {"PS1": "$ "}}}),
        )
        .await["session_id"]
        .clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"echo hello-from-pul''sar\n")}),
    )
    .await;
    line.read_output_until(&id, "hello-from-pulsar\r\n").await;

    let output = tokio::task::spawn_blocking({
        let id = id.as_str().unwrap().to_owned();
        move || {
            Command::new("node")
                .arg(browser_dir().join("run.mjs"))
                .args([
                    ws_port.to_string(),
                    id,
                    allowed_port.to_string(),
                    foreign_port.to_string(),
                    "hello-from-pulsar".to_owned(),
                ])
                .env("CHROMIUM", chromium())
                .output()
                .expect("run node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no result ({e}): {stdout}\n{stderr}"));
    assert!(result.get("error").is_none(), "{result}\n{stderr}");
    assert_eq!(result["showsScreen"], true, "{result}\n{stderr}");
    assert_eq!(result["typingWorks"], true, "{result}\n{stderr}");
    assert_eq!(result["allowed"]["opened"], true, "{result}");
    // The foreign page never got a socket, nor a byte of the session.
    assert_eq!(result["foreign"]["opened"], false, "{result}");
    assert_eq!(result["foreign"]["frames"], 0, "{result}");
    assert!(
        !result["foreignScreen"]
            .as_str()
            .unwrap()
            .contains("hello-from-pulsar")
    );
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "origin \"http://127.0.0.1:{foreign_port}\" is not allowed"
        )),
        "{log}"
    );
    // And the typing reached the shell itself.
    line.read_output_until(&id, "typed-in-browser\r\n").await;
}
