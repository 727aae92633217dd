//! Operator tools that need no daemon: `systemd-unit`, `man`, and completion of
//! process ids. They drive the real binary on real config files.

use crate::support::cli::{DaemonGuard, Sandbox, daemon_sandbox, free_port, rollbridge_in};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// The line `key=value` of a unit, for exact checks.
fn unit_value<'u>(unit: &'u str, key: &str) -> Vec<&'u str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .collect()
}

fn worker_config(sandbox: &Sandbox) -> serde_json::Value {
    json!({
        "application": "shop",
        "control": {"path": sandbox.socket().to_str().unwrap(), "mode": "640"},
        "proxy": {"host": "127.0.0.1", "port": 4599, "forceStopTimeoutMs": 10000},
        "processes": [
            {"id": "web", "policy": "proxied", "command": "exec python3 app.py",
             "port": {"from": 18000, "to": 18099}, "health": {"timeoutMs": 45000}},
            {"id": "jobs", "command": "exec python3 worker.py",
             "lifecycle": {"quiet": "kill -TSTP $ROLLBRIDGE_PID", "drainTimeoutMs": 20000}},
        ]
    })
}

/// Runs `systemd-analyze verify` on unit files, or says visibly why it cannot.
fn verify_units(units: &[&Path]) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED systemd-analyze verify: systemd-analyze is not installed (checked by content only)"
        );
        return;
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .expect("run systemd-analyze");
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn systemd_unit_is_ready_to_install_with_timeouts_from_the_config() {
    let sandbox = Sandbox::new("shop");
    sandbox.write_config(&worker_config(&sandbox));
    // A relative --config still gives absolute paths.
    let run = rollbridge_in(
        sandbox.path(),
        &["systemd-unit", "--config", "rollbridge.json"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let unit = &run.stdout;
    let config = sandbox.config_path().canonicalize().unwrap();
    let binary = Path::new(crate::support::cli::BIN).canonicalize().unwrap();
    assert_eq!(
        unit_value(unit, "ExecStart"),
        [format!(
            "{} daemon --config {}",
            binary.display(),
            config.display()
        )]
    );
    assert_eq!(
        unit_value(unit, "WorkingDirectory"),
        [config.parent().unwrap().display().to_string()]
    );
    assert_eq!(unit_value(unit, "Type"), ["notify"]);
    assert_eq!(unit_value(unit, "NotifyAccess"), ["main"]);
    assert_eq!(unit_value(unit, "KillMode"), ["mixed"]);
    assert_eq!(unit_value(unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(unit_value(unit, "FileDescriptorStoreMax"), ["4"]);
    assert_eq!(unit_value(unit, "WatchdogSec"), ["30"]);
    // jobs: quiet (10 s) + drain 20 s + stop 10 s + 5 s SIGKILL, + 5 s proxy close.
    assert_eq!(unit_value(unit, "TimeoutStopSec"), ["50"]);
    // web's health.timeoutMs 45 s + 30 s.
    assert_eq!(unit_value(unit, "TimeoutStartSec"), ["75"]);
    assert_eq!(unit_value(unit, "WantedBy"), ["multi-user.target"]);
    assert!(
        unit_value(unit, "Requires").is_empty(),
        "no socket unit asked for"
    );

    let out = sandbox.path().join("units");
    let run = sandbox.run("systemd-unit", &["--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let service = out.join("rollbridge-shop.service");
    assert_eq!(run.stdout.trim(), service.display().to_string());
    let written = std::fs::read_to_string(&service).unwrap();
    assert_eq!(
        unit_value(&written, "TimeoutStopSec"),
        unit_value(unit, "TimeoutStopSec")
    );
    verify_units(&[&service]);
}

#[test]
fn systemd_unit_with_a_socket_unit_and_an_indefinite_stop() {
    let sandbox = Sandbox::new("shop");
    let mut config = worker_config(&sandbox);
    config["processes"][1]["gracefulStopMs"] = json!("indefinite");
    sandbox.write_config(&config);
    let out = sandbox.path().join("units");
    let run = sandbox.run(
        "systemd-unit",
        &["--socket", "--out", out.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let service_path = out.join("rollbridge-shop.service");
    let socket_path = out.join("rollbridge-shop.socket");
    let service = std::fs::read_to_string(&service_path).unwrap();
    let socket = std::fs::read_to_string(&socket_path).unwrap();
    assert_eq!(unit_value(&service, "TimeoutStopSec"), ["infinity"]);
    assert_eq!(unit_value(&service, "Requires"), ["rollbridge-shop.socket"]);
    assert_eq!(
        unit_value(&socket, "ListenStream"),
        [
            "127.0.0.1:4599".to_string(),
            sandbox.socket().display().to_string()
        ]
    );
    assert_eq!(unit_value(&socket, "SocketMode"), ["0640"]);
    assert_eq!(unit_value(&socket, "Service"), ["rollbridge-shop.service"]);
    verify_units(&[&service_path, &socket_path]);

    // Printed instead of written: both units, each under its file name.
    let run = sandbox.run("systemd-unit", &["--socket", "--user"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("# ---- rollbridge-shop.service ----\n")
    );
    assert!(
        run.stdout
            .contains("\n# ---- rollbridge-shop.socket ----\n")
    );
    assert_eq!(unit_value(&run.stdout, "WantedBy")[0], "default.target");
    assert!(unit_value(&run.stdout, "User").is_empty());
}

#[test]
fn systemd_unit_runs_as_the_config_files_owner() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED systemd_unit_runs_as_the_config_files_owner: needs root to chown");
        return;
    }
    let sandbox = Sandbox::new("shop");
    sandbox.write_config(&worker_config(&sandbox));
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(&sandbox.config_path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    let group = nix::unistd::Group::from_gid(nobody.gid).unwrap().unwrap();
    let run = sandbox.run("systemd-unit", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(unit_value(&run.stdout, "User"), ["nobody"]);
    assert_eq!(unit_value(&run.stdout, "Group"), [group.name.as_str()]);
}

#[test]
fn systemd_unit_refuses_an_invalid_config() {
    let sandbox = Sandbox::with("shop", |config| config["processes"] = json!([]));
    let run = sandbox.run("systemd-unit", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("Error: Invalid Rollbridge config"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty());
}

/// The commands `rollbridge --help` lists (without `help` itself).
fn listed_commands() -> Vec<String> {
    let help = rollbridge_in(Path::new("/"), &["--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    help.stdout
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // Wrapped descriptions are indented further than command names.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn man_writes_a_page_for_the_tool_and_every_command() {
    let commands = listed_commands();
    assert!(commands.len() > 15, "{commands:?}");
    assert!(commands.contains(&"systemd-unit".to_string()));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("share/man/man1");
    let run = rollbridge_in(dir.path(), &["man", target.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut expected: Vec<String> = std::iter::once("rollbridge".to_string())
        .chain(commands.iter().map(|c| format!("rollbridge-{c}")))
        .map(|page| target.join(format!("{page}.1")).display().to_string())
        .collect();
    let mut printed: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    expected.sort();
    printed.sort();
    assert_eq!(printed, expected);
    for command in &commands {
        let page = std::fs::read_to_string(target.join(format!("rollbridge-{command}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH rollbridge-{command} 1")),
            "{command}: title line"
        );
        assert!(page.contains(".SH NAME"), "{command}");
    }
    let deploy = std::fs::read_to_string(target.join("rollbridge-deploy.1")).unwrap();
    assert!(
        deploy.contains("release\\-path"),
        "deploy's options are documented"
    );
    // Default folder: ./man
    let run = rollbridge_in(dir.path(), &["man"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.path().join("man/rollbridge-man.1").is_file());
}

/// A config with a replicated worker, in a sandbox.
fn replicated_sandbox() -> Sandbox {
    Sandbox::with("ids", |config| {
        config["processes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "worker", "command": "exec sleep 100", "replicas": 2}));
    })
}

#[test]
fn process_ids_lists_ids_then_replica_instances() {
    let sandbox = replicated_sandbox();
    let run = sandbox.run("process-ids", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "web\nworker\nworker#0\nworker#1\n");
    // Hidden: not a command people are offered.
    assert!(!listed_commands().contains(&"process-ids".to_string()));
}

/// Runs bash's completion of `line` (the word being completed is the last,
/// possibly empty) with the generated script, from `cwd`.
fn bash_complete(cwd: &Path, line: &[&str]) -> Vec<String> {
    let script = rollbridge_in(cwd, &["completion", "bash"]).stdout;
    let script_path = cwd.join("completion.bash");
    std::fs::write(&script_path, script).unwrap();
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n_rollbridge rollbridge '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script_path.display(),
        words.join(" "),
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len() - 2],
    );
    let bin_dir = Path::new(crate::support::cli::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &program])
        .env("PATH", path)
        .current_dir(cwd)
        .output()
        .expect("run bash");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_process_ids_from_the_config() {
    let sandbox = replicated_sandbox();
    // The default config of the working directory.
    assert_eq!(
        bash_complete(sandbox.path(), &["rollbridge", "logs", "--process", "wor"]),
        ["worker", "worker#0", "worker#1"]
    );
    // A config named with --config, from another folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = sandbox.config_path();
    assert_eq!(
        bash_complete(
            elsewhere.path(),
            &[
                "rollbridge",
                "restart",
                "--config",
                config.to_str().unwrap(),
                "--process",
                ""
            ]
        ),
        ["web", "worker", "worker#0", "worker#1"]
    );
    // No config: nothing offered, no error on the terminal.
    assert!(bash_complete(elsewhere.path(), &["rollbridge", "logs", "--process", ""]).is_empty());
}

#[test]
fn zsh_and_fish_scripts_complete_process_ids_too() {
    let dir = tempfile::tempdir().unwrap();
    let zsh = rollbridge_in(dir.path(), &["completion", "zsh"]).stdout;
    assert!(zsh.starts_with("#compdef rollbridge\n"));
    assert!(zsh.contains("_rollbridge_process_ids() {"));
    let specs: Vec<&str> = zsh
        .lines()
        .filter(|l| l.starts_with("'--process=["))
        .collect();
    assert_eq!(specs.len(), 2, "logs and restart");
    assert!(
        specs
            .iter()
            .all(|l| l.ends_with(":id:_rollbridge_process_ids' \\")),
        "{specs:?}"
    );
    let fish = rollbridge_in(dir.path(), &["completion", "fish"]).stdout;
    assert!(fish.contains("function __fish_rollbridge_process_ids"));
    for command in ["logs", "restart"] {
        let line = fish
            .lines()
            .find(|l| l.contains(&format!("using_subcommand {command}\" -l process ")))
            .unwrap_or_else(|| panic!("no --process line for {command}"));
        assert!(
            line.ends_with("-r -f -a \"(__fish_rollbridge_process_ids)\""),
            "{line}"
        );
    }
    for (shell, script) in [("zsh", &zsh), ("fish", &fish)] {
        let path = dir.path().join(format!("completion.{shell}"));
        std::fs::write(&path, script).unwrap();
        match Command::new(shell).arg("-n").arg(&path).output() {
            Ok(output) => assert!(output.status.success(), "{shell} -n: {output:?}"),
            Err(_) => eprintln!("SKIPPED {shell} -n: {shell} is not installed"),
        }
    }
}

#[test]
fn deploy_warns_when_the_daemon_runs_another_config_or_the_release_is_missing() {
    let sandbox = daemon_sandbox("twofiles", free_port());
    let _daemon = DaemonGuard::start(&sandbox);
    let release = sandbox.path().join("r1");
    std::fs::create_dir(&release).unwrap();
    // The same settings under another name: it finds the same daemon.
    let other = sandbox.path().join("other.json");
    std::fs::copy(sandbox.config_path(), &other).unwrap();

    let run = rollbridge_in(
        sandbox.path(),
        &["deploy", "--config", "other.json", "--release-path", "r1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let warning = run
        .stderr
        .lines()
        .find(|line| line.starts_with("warning: the daemon on "))
        .unwrap_or_else(|| panic!("no warning: {run:?}"));
    let running = sandbox.config_path().canonicalize().unwrap();
    assert!(
        warning.contains(&format!(
            "runs the config {}, not other.json",
            running.display()
        )),
        "{warning}"
    );
    assert!(warning.contains("--config other.json"), "{warning}");

    // The daemon's own file, named relatively or absolutely: no warning.
    let run = rollbridge_in(
        sandbox.path(),
        &[
            "deploy",
            "--config",
            "rollbridge.json",
            "--release-path",
            "r1",
            "--release-id",
            "r2",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");

    // A release directory that does not exist is named before the daemon's error.
    let run = sandbox.run("deploy", &["--release-path", "r-missing"]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "warning: --release-path {} is not an existing directory",
            sandbox.path().join("r-missing").display()
        )),
        "{run:?}"
    );
    assert!(lines[1].starts_with("Error: "), "{run:?}");
    assert!(
        lines[1].contains(&format!(
            "Release path {} does not exist; pass the release's directory with deploy --release-path",
            sandbox.path().join("r-missing").display()
        )),
        "the daemon names --release-path, not a process's cwd: {run:?}"
    );
}
