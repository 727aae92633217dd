//! Output modes: without a terminal (and with `--json`) every command prints
//! exactly the bytes it printed before human output existed; on a terminal
//! (a pseudo-terminal from util-linux `script`) `status` is a table, deploys
//! show progress steps on stderr, and colour follows `--color` and NO_COLOR.

use crate::support::cli::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};

/// Runs `rollbridge <command> --config <sandbox config> <rest>` with stdout and
/// stderr on a pseudo-terminal (`script -qec`), `env` added. Returns the
/// screen with `\r\n` turned into `\n`.
fn on_terminal(sandbox: &Sandbox, command: &str, rest: &[&str], env: &[(&str, &str)]) -> Run {
    let config = sandbox.config_path();
    let mut line = format!("{BIN} {command} --config {}", config.display());
    for arg in rest {
        line.push(' ');
        line.push_str(arg);
    }
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .current_dir(sandbox.path())
        .stdin(Stdio::null())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    for (key, value) in env {
        script.env(key, value);
    }
    let output = script
        .output()
        .expect("util-linux script (the pseudo-terminal)");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A real daemon on the fixture config, with empty release directories
/// `releases` in its sandbox.
fn daemon_with_releases(application: &str, releases: &[&str]) -> (Sandbox, DaemonGuard) {
    let sandbox = daemon_sandbox(application, free_port());
    for release in releases {
        std::fs::create_dir_all(sandbox.path().join(release)).unwrap();
    }
    let daemon = DaemonGuard::start(&sandbox);
    (sandbox, daemon)
}

fn has_script() -> bool {
    let found = Command::new("script").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: util-linux `script` is not installed (no pseudo-terminal)");
    }
    found
}

const ESCAPE: &str = "\x1b[";

/// The pretty JSON a reply line prints as (today's bytes).
fn pretty(reply: &str) -> String {
    let value: Value = serde_json::from_str(reply).unwrap();
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap())
}

fn status_reply() -> Value {
    json!({"activeReleaseId": "v2", "application": "shop",
        "control": {"path": "/run/shop.sock"}, "orphans": [],
        "proxy": {"host": "127.0.0.1", "port": 4000, "upstreamHost": "127.0.0.1"},
        "releases": [{"activatedAt": "2026-12-06T01:00:00.000Z", "connectionCount": 1,
            "connections": {"http": 1, "websocket": 0}, "ports": {"web": 18001},
            "processes": [{"children": [], "command": "exec app", "cwd": "/srv/v2", "id": "web",
                "lastStartReason": "deploy", "logs": [], "memoryRestarts": 0, "pid": 4242,
                "restarts": 0, "startedAt": "2026-12-06T01:00:00.000Z", "state": "running",
                "uptimeMs": 1234}],
            "releaseId": "v2", "releasePath": "/srv/v2", "revision": "abc", "state": "active"}],
        "services": [], "singletons": []})
}

#[test]
fn without_a_terminal_every_command_prints_the_reply_bytes_and_json_is_the_same() {
    let sandbox = Sandbox::new("bytes");
    let replies: Vec<(&str, Vec<&str>, String)> = vec![
        ("status", vec![], success(status_reply())),
        (
            "deploy",
            vec!["--release-path", "."],
            success(json!({"activeReleaseId": "v2", "previousReleaseId": "v1",
                "warnings": ["jobs of release v1: quiet command exited non-zero {\"code\":3,\"id\":\"jobs\"}"]})),
        ),
        (
            "rollback",
            vec![],
            success(json!({"activeReleaseId": "v1", "previousReleaseId": "v2"})),
        ),
        (
            "restart",
            vec![],
            success(json!({"restarted": ["worker#0", "worker#1"]})),
        ),
        ("stop", vec![], success(status_reply())),
        ("shutdown", vec![], success(json!({"message": "shutdown"}))),
    ];
    let answers: std::collections::HashMap<String, String> = replies
        .iter()
        .map(|(command, _, reply)| (command.to_string(), reply.clone()))
        .collect();
    for json_flag in [false, true] {
        let _daemon = FakeDaemon::start(&sandbox.socket(), {
            let answers = answers.clone();
            move |request| answers.get(request["command"].as_str()?).cloned()
        });
        for (command, rest, reply) in &replies {
            let mut args = rest.clone();
            if json_flag {
                args.push("--json");
            }
            let run = sandbox.run(command, &args);
            assert_eq!(run.code, 0, "{command}: {run:?}");
            assert_eq!(run.stdout, pretty(reply), "{command} {args:?}");
            assert_eq!(run.stderr, "", "{command}: no progress without a terminal");
        }
    }
}

#[test]
fn events_and_logs_keep_their_text_and_json_without_a_terminal() {
    let sandbox = Sandbox::new("texts");
    let event = json!({"at": "2026-12-06T01:00:00.000Z", "data": {"releaseId": "v1"},
        "message": "release stopped"});
    let status = json!({"releases": [{"releaseId": "v1", "state": "active", "processes": [
        {"id": "web", "logs": [{"at": "2026-12-06T01:00:00.000Z", "line": "hi", "stream": "stdout"}]}]}],
        "services": [], "singletons": []});
    let _daemon = FakeDaemon::start(&sandbox.socket(), {
        let (event, status) = (event.clone(), status.clone());
        move |request| match request["command"].as_str()? {
            "events" => Some(success(json!({"events": [event.clone()]}))),
            "status" => Some(success(status.clone())),
            _ => None,
        }
    });
    let run = sandbox.run("events", &[]);
    assert_eq!(
        run.stdout,
        "2026-12-06T01:00:00.000Z  release stopped {\"releaseId\":\"v1\"}\n"
    );
    let run = sandbox.run("events", &["--json"]);
    assert_eq!(
        run.stdout,
        format!(
            "{}\n",
            serde_json::to_string_pretty(&json!([event])).unwrap()
        )
    );
    let run = sandbox.run("logs", &[]);
    assert_eq!(
        run.stdout,
        "== web [release v1 (active)] ==\n  2026-12-06T01:00:00.000Z [stdout] hi\n"
    );
}

#[test]
fn status_on_a_terminal_is_a_table_coloured_unless_told_not_to() {
    if !has_script() {
        return;
    }
    let (sandbox, _daemon) = daemon_with_releases("human-status", &["v1"]);
    let deploy = sandbox.run("deploy", &["--release-path", "v1", "--release-id", "v1"]);
    assert_eq!(deploy.code, 0, "{deploy:?}");
    let status = json_of(&sandbox.run("status", &[]));
    let web = status["releases"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|process| process["id"] == "web")
        .unwrap()
        .clone();

    let plain = on_terminal(&sandbox, "status", &["--color", "never"], &[]);
    eprintln!("status on a terminal:\n{}", plain.stdout);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(!plain.stdout.contains(ESCAPE), "{plain:?}");
    let lines: Vec<&str> = plain.stdout.lines().collect();
    assert!(
        lines[0].starts_with("human-status  active v1  proxy 127.0.0.1:"),
        "{plain:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("RELEASE  STATE   HTTP  WS")),
        "{plain:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("v1       active  0     0 ")),
        "{plain:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("PROCESS  INSTANCE  RELEASE  PID")),
        "{plain:?}"
    );
    let web_port = status["releases"][0]["ports"]["web"].to_string();
    let web_row = lines
        .iter()
        .find(|line| line.starts_with("web "))
        .unwrap_or_else(|| panic!("no web row: {plain:?}"));
    let cells: Vec<&str> = web_row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["web", "-", "v1", &web["pid"].to_string(), "running"]
    );
    assert_eq!(cells.last(), Some(&web_port.as_str()));

    let coloured = on_terminal(&sandbox, "status", &[], &[]);
    assert!(
        coloured.stdout.contains("\x1b[32mrunning\x1b[0m"),
        "{coloured:?}"
    );
    let no_color = on_terminal(&sandbox, "status", &[], &[("NO_COLOR", "1")]);
    assert!(!no_color.stdout.contains(ESCAPE), "{no_color:?}");
    assert!(
        no_color.stdout.contains("PROCESS  INSTANCE"),
        "{no_color:?}"
    );
    let forced = on_terminal(
        &sandbox,
        "status",
        &["--color", "always"],
        &[("NO_COLOR", "1")],
    );
    assert!(forced.stdout.contains(ESCAPE), "{forced:?}");

    // --json on a terminal is the reply, as scripts get it.
    let json = on_terminal(&sandbox, "status", &["--json"], &[]);
    let reply: Value = serde_json::from_str(&json.stdout).expect("JSON on a terminal");
    assert_eq!(
        reply["releases"][0]["processes"].as_array().unwrap().len(),
        2
    );
    assert!(!json.stdout.contains(ESCAPE));
}

#[test]
fn exit_codes_do_not_depend_on_the_output_mode() {
    if !has_script() {
        return;
    }
    let sandbox = Sandbox::new("codes");
    // No daemon: an error, exit 1, on a terminal and off it.
    let piped = sandbox.run("status", &[]);
    let terminal = on_terminal(&sandbox, "status", &[], &[]);
    assert_eq!(
        (piped.code, terminal.code),
        (1, 1),
        "{piped:?}\n{terminal:?}"
    );
    assert!(
        terminal.stdout.contains("Error: connect ENOENT"),
        "{terminal:?}"
    );
}

#[test]
fn a_deploy_on_a_terminal_shows_its_steps_and_a_summary() {
    if !has_script() {
        return;
    }
    let (sandbox, _daemon) = daemon_with_releases("human-deploy", &["v1", "v2"]);
    let first = sandbox.run("deploy", &["--release-path", "v1", "--release-id", "v1"]);
    assert_eq!(first.code, 0, "{first:?}");

    let run = on_terminal(
        &sandbox,
        "deploy",
        &[
            "--release-path",
            "v2",
            "--release-id",
            "v2",
            "--color",
            "never",
        ],
        &[],
    );
    eprintln!("deploy on a terminal:\n{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    let steps = [
        "release v2 starting from ",
        "web of v2 started (pid ",
        "web of v2 healthy after ",
        "traffic switched to v2 (from v1)",
        "draining v1: 0 HTTP / 0 WebSocket connections",
        "==> deployed v2 (",
        "✓ Deployed v2: traffic switched from v1",
    ];
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut at = 0;
    for step in steps {
        let found = lines[at..]
            .iter()
            .position(|line| line.contains(step))
            .unwrap_or_else(|| panic!("no step {step:?} after line {at}: {run:?}"));
        at += found;
    }
    assert!(run.stdout.contains("worker of v2 started (pid "), "{run:?}");
    // Each step carries its elapsed time: `   0.3s release v2 starting …`.
    let timed = lines
        .iter()
        .find(|line| line.contains("release v2 starting"))
        .unwrap();
    assert!(
        timed.trim_start().split(' ').next().unwrap().ends_with('s'),
        "{timed}"
    );
    assert!(!run.stdout.contains(ESCAPE));
}

#[test]
fn progress_forces_plain_step_lines_on_stderr_and_leaves_stdout_alone() {
    let (sandbox, _daemon) = daemon_with_releases("progress-ci", &["v1"]);
    let run = sandbox.run(
        "deploy",
        &["--release-path", "v1", "--release-id", "v1", "--progress"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v1\",\n  \"previousReleaseId\": null\n}\n"
    );
    assert!(run.stderr.contains("release v1 starting from "), "{run:?}");
    assert!(run.stderr.contains("traffic switched to v1\n"), "{run:?}");
    assert!(run.stderr.contains("==> deployed v1 ("), "{run:?}");
    assert!(!run.stderr.contains(ESCAPE), "{run:?}");

    // Rollback's steps too (back to the retained v1 after a deploy of v2).
    std::fs::create_dir_all(sandbox.path().join("v2")).unwrap();
    let v2 = sandbox.run("deploy", &["--release-path", "v2", "--release-id", "v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    let back = sandbox.run("rollback", &["--progress"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(json_of(&back)["activeReleaseId"], "v1");
    assert!(back.stderr.contains("rolling back to v1\n"), "{back:?}");
    assert!(
        back.stderr.contains("traffic switched to v1 (from v2)"),
        "{back:?}"
    );
    assert!(back.stderr.contains("==> rolled back to v1 ("), "{back:?}");

    // Shutdown keeps follow streams open while it stops processes: its steps show.
    let shutdown = sandbox.run("shutdown", &["--progress"]);
    assert_eq!(shutdown.code, 0, "{shutdown:?}");
    assert_eq!(json_of(&shutdown)["message"], "shutdown");
    assert!(shutdown.stderr.contains("web of v1 exited"), "{shutdown:?}");
    assert!(
        shutdown.stderr.contains("==> the daemon shut down ("),
        "{shutdown:?}"
    );
}

#[test]
fn a_failing_hook_is_a_warning_in_the_reply_and_on_the_terminal() {
    let sandbox = daemon_sandbox("hook-warnings", free_port());
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    config["processes"][1]["lifecycle"] = json!({"quiet": "exit 3", "drainTimeoutMs": 500});
    sandbox.write_config(&config);
    std::fs::create_dir_all(sandbox.path().join("v1")).unwrap();
    let _daemon = DaemonGuard::start(&sandbox);
    let deploy = sandbox.run("deploy", &["--release-path", "v1", "--release-id", "v1"]);
    assert_eq!(deploy.code, 0, "{deploy:?}");
    assert!(
        !deploy.stdout.contains("warnings"),
        "nothing failed: {deploy:?}"
    );

    let restart = sandbox.run("restart", &["--process", "worker"]);
    assert_eq!(restart.code, 0, "{restart:?}");
    let reply = json_of(&restart);
    assert_eq!(reply["restarted"], json!(["worker"]));
    let warnings = reply["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{reply}");
    assert_eq!(
        warnings[0],
        "worker of release v1: quiet command exited non-zero {\"code\":3,\"id\":\"worker\"}"
    );
    if !has_script() {
        return;
    }
    let run = on_terminal(
        &sandbox,
        "restart",
        &["--process", "worker", "--color", "never"],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("✓ Restarted 1 process: worker.\nwarning: worker of release v1: quiet command exited non-zero"),
        "{run:?}"
    );
}
