//! The guides' configs, run for real. `docs/guides/gunicorn.md`: gunicorn from
//! PyPI in a temporary virtualenv, the guide's app and config, deploys under
//! load with zero failed requests. Skipped (visibly) only when the package index
//! cannot be reached.

use crate::support::cli::{DaemonGuard, Sandbox, free_port, http_get, poll, rollbridge_in};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first fenced block of `language` in a guide.
fn fenced_block(guide: &str, language: &str) -> String {
    let fence = format!("```{language}\n");
    let start = guide
        .find(&fence)
        .unwrap_or_else(|| panic!("no {language} block"))
        + fence.len();
    let end = guide[start..].find("```").expect("closing fence") + start;
    guide[start..end].to_string()
}

/// Replaces `from` (which must be there, so the guide cannot drift from the test).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the guide's config has {from:?}");
    text.replacen(from, to, 1)
}

/// Output lines that mean pip could not reach the package index.
fn index_unreachable(output: &str) -> bool {
    [
        "NewConnectionError",
        "Temporary failure in name resolution",
        "Failed to establish a new connection",
        "Network is unreachable",
        "No matching distribution found",
        "Could not find a version that satisfies",
        "ConnectTimeoutError",
        "ProxyError",
    ]
    .iter()
    .any(|sign| output.contains(sign))
}

/// A virtualenv with gunicorn, or `None` (after saying why) when PyPI is out
/// of reach.
fn gunicorn_venv(dir: &Path) -> Option<std::path::PathBuf> {
    let venv = dir.join("venv");
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("run python3");
    assert!(
        created.status.success(),
        "python3 -m venv failed (on Debian install python3-venv): {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let installed = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            "--retries",
            "1",
            "gunicorn",
        ])
        .output()
        .expect("run pip");
    if !installed.status.success() {
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&installed.stdout),
            String::from_utf8_lossy(&installed.stderr)
        );
        if index_unreachable(&output) {
            eprintln!(
                "SKIPPED gunicorn guide test: the Python package index is unreachable ({})",
                output.lines().last().unwrap_or_default()
            );
            return None;
        }
        panic!("pip install gunicorn failed: {output}");
    }
    Some(venv)
}

#[test]
fn the_gunicorn_guide_deploys_under_load_without_a_failed_request() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guides/gunicorn.md"),
    )
    .unwrap();
    let sandbox = Sandbox::new("shop");
    let Some(venv) = gunicorn_venv(sandbox.path()) else {
        return;
    };
    let port = free_port();
    let config = fenced_block(&guide, "lua");
    let config = replaced(&config, "port = 8000,", &format!("port = {port},"));
    let config = replaced(
        &config,
        "\"/run/shop/rollbridge.sock\"",
        &format!("{:?}", sandbox.socket().display().to_string()),
    );
    let config_path = sandbox.path().join("rollbridge.lua");
    std::fs::write(&config_path, config).unwrap();
    let app = fenced_block(&guide, "python");
    for release in ["r1", "r2", "r3"] {
        let dir = sandbox.path().join("releases").join(release);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.py"), &app).unwrap();
        std::os::unix::fs::symlink(&venv, dir.join(".venv")).unwrap();
    }
    let validated = rollbridge_in(sandbox.path(), &["validate", "--config", "rollbridge.lua"]);
    assert_eq!(validated.code, 0, "{validated:?}");

    let _daemon = DaemonGuard::start_with(&sandbox, &config_path);
    let deploy = |release: &str| {
        let run = rollbridge_in(
            sandbox.path(),
            &[
                "deploy",
                "--config",
                "rollbridge.lua",
                "--release-path",
                &format!("releases/{release}"),
                "--release-id",
                release,
            ],
        );
        assert_eq!(run.code, 0, "deploy {release}: {run:?}");
    };
    deploy("r1");
    assert_eq!(
        http_get(port, "/").unwrap(),
        (200, "hello from r1\n".to_string())
    );

    // Clients that keep sending requests, each on a fresh connection.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http_get(port, "/") {
                        Ok((200, body)) => served.lock().unwrap().push(body),
                        Ok((status, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("HTTP {status} {body:?}")),
                        Err(error) => failures.lock().unwrap().push(error.to_string()),
                    }
                }
            })
        })
        .collect();
    let count = |release: &str| {
        let line = format!("hello from {release}\n");
        served
            .lock()
            .unwrap()
            .iter()
            .filter(|body| **body == line)
            .count()
    };
    let wait_for_traffic = |release: &str| {
        poll(Duration::from_secs(30), || {
            (count(release) >= 20).then_some(())
        })
        .unwrap_or_else(|| panic!("{release} never served 20 requests"));
    };
    wait_for_traffic("r1");
    deploy("r2");
    wait_for_traffic("r2");
    deploy("r3");
    wait_for_traffic("r3");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let total = served.lock().unwrap().len();
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(total >= 60, "{total} requests");
    // The replaced gunicorns went away on their own signals: both releases
    // reach "stopped" well before SIGKILL would have been needed.
    let stopped = poll(Duration::from_secs(30), || {
        let status = rollbridge_in(sandbox.path(), &["status", "--config", "rollbridge.lua"]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).ok()?;
        let states: Vec<(String, String)> = status["releases"]
            .as_array()?
            .iter()
            .map(|r| {
                (
                    r["releaseId"].as_str().unwrap_or_default().to_string(),
                    r["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let done = states
            .iter()
            .any(|(id, state)| id == "r1" && state == "stopped")
            && states
                .iter()
                .any(|(id, state)| id == "r2" && state == "stopped");
        done.then_some(states)
    });
    assert!(stopped.is_some(), "the old releases did not stop");
    eprintln!("gunicorn guide: {total} requests over 2 deploys, 0 failed");
}

#[test]
fn every_guides_config_passes_validate() {
    let guides = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guides");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&guides).unwrap() {
        let path = entry.unwrap().path();
        let guide = std::fs::read_to_string(&path).unwrap();
        let Some(at) = guide.find("```lua\n-- /srv/shop/rollbridge.lua") else {
            continue;
        };
        let config = fenced_block(&guide[at..], "lua");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rollbridge.lua"), &config).unwrap();
        let run = rollbridge_in(dir.path(), &["validate"]);
        assert_eq!(run.code, 0, "{}: {run:?}", path.display());
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(
        checked,
        ["gunicorn.md", "node.md", "puma.md", "queue-worker.md"]
    );
}
