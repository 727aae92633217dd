//! Managed processes' output files (`processes[].logFile`): raw and JSON lines,
//! one file per replica, one shared writer per path, rotation and retention,
//! reopen on SIGHUP, and a file that cannot be opened. Real daemons, real
//! processes, real files.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A process that prints `out <n>` on stdout and `err <n>` on stderr, every
/// `pause` seconds, for as long as it runs.
fn ticker(id: &str, policy: &str, pause: &str, log_file: Value) -> Value {
    json!({
        "id": id,
        "policy": policy,
        "command": format!(
            "i=0; while :; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); sleep {pause}; done"
        ),
        "logFile": log_file,
    })
}

/// The base config with `web`'s `logFile` set and `extra` processes added.
fn config_with(web_log: Option<Value>, extra: Vec<Value>) -> impl FnOnce(&Path, u16) -> Value {
    move |dir, port| {
        let mut config = base_config(dir, port);
        if let Some(log) = web_log {
            config["processes"][0]["logFile"] = log;
        }
        config["processes"].as_array_mut().unwrap().extend(extra);
        config
    }
}

fn process_dropped_lines(harness: &Harness) -> u64 {
    harness.status()["logging"]["processDroppedLines"]
        .as_u64()
        .expect("status.logging.processDroppedLines")
}

#[test]
fn raw_and_json_files_get_a_proxied_process_and_a_service() {
    let mut harness = Harness::new(config_with(
        // Relative: resolved against the config's folder (the temp dir).
        Some(json!("logs/{{processId}}.log")),
        vec![ticker(
            "ticker",
            "service",
            "0.05",
            json!({"path": "logs/ticker.jsonl", "format": "json"}),
        )],
    ));
    harness.start();
    harness.deploy("v1");
    let web_log = harness.path("logs/web.log");
    wait_until(PATIENCE, "both of web's start lines in its file", || {
        let lines = file_lines(&web_log);
        lines.iter().any(|l| l == "stderr hello from v1")
            && lines
                .iter()
                .any(|l| l.starts_with("listening on ") && l.ends_with(" for v1"))
    });
    // Raw lines are exactly what the app printed, stdout and stderr together.
    for line in file_lines(&web_log) {
        assert!(
            line == "stderr hello from v1"
                || (line.starts_with("listening on ") && line.ends_with(" for v1")),
            "{line}"
        );
    }

    let ticker_log = harness.path("logs/ticker.jsonl");
    wait_until(PATIENCE, "ticker lines on both streams", || {
        let text = std::fs::read_to_string(&ticker_log).unwrap_or_default();
        text.contains("\"out 3\"") && text.contains("\"err 3\"")
    });
    let entries: Vec<Value> = file_lines(&ticker_log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for entry in &entries {
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["at", "line", "stream"], "{entry}");
        let line = entry["line"].as_str().unwrap();
        let expected_stream = if line.starts_with("out ") {
            "stdout"
        } else {
            "stderr"
        };
        assert_eq!(entry["stream"], expected_stream, "{entry}");
    }
    // Each stream's lines arrive in order, none missing.
    for (prefix, stream) in [("out ", "stdout"), ("err ", "stderr")] {
        let numbers: Vec<u64> = entries
            .iter()
            .filter(|e| e["stream"] == stream)
            .map(|e| e["line"].as_str().unwrap()[prefix.len()..].parse().unwrap())
            .collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    }
    // The ring keeps working next to the file.
    let service = &harness.status()["services"][0]["process"];
    assert!(
        service["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"].as_str().unwrap().starts_with("out ")),
        "{service}"
    );

    // A restart and a second release append to the same files.
    harness.ok(json!({"command": "restart", "processId": "ticker"}));
    wait_until(
        PATIENCE,
        "the restarted ticker to start counting again",
        || {
            file_lines(&ticker_log)
                .iter()
                .filter(|l| l.contains("\"line\":\"out 0\""))
                .count()
                == 2
        },
    );
    harness.deploy("v2");
    wait_until(PATIENCE, "v2's start lines after v1's", || {
        let lines = file_lines(&web_log);
        lines.iter().any(|l| l == "stderr hello from v2")
            && lines.iter().any(|l| l == "stderr hello from v1")
    });
    assert_eq!(process_dropped_lines(&harness), 0);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn replicas_get_a_file_each() {
    let mut harness = Harness::new(config_with(
        None,
        vec![json!({
            "id": "worker",
            "command": "echo \"worker $ROLLBRIDGE_REPLICA_INDEX of {{replicaCount}}\"; exec sleep 1000",
            "replicas": 3,
            "logFile": "workers/{{processId}}-{{replicaIndex}}.log"
        })],
    ));
    harness.start();
    harness.deploy("v1");
    for index in 0..3 {
        let path = harness.path(&format!("workers/worker-{index}.log"));
        wait_until(PATIENCE, "each replica's line in its own file", || {
            file_lines(&path) == [format!("worker {index} of 3")]
        });
    }
    // web has no logFile: nothing else was written.
    let mut names: Vec<String> = std::fs::read_dir(harness.path("workers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["worker-0.log", "worker-1.log", "worker-2.log"]);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn processes_sharing_a_path_write_whole_lines() {
    const LINES: usize = 2000;
    // Block-buffered prints: each process writes 8 KiB chunks that cut lines
    // anywhere, and all three write at once.
    let script = format!(
        "python3 -c \"import os; w = os.environ['ROLLBRIDGE_REPLICA_INDEX']; [print(f'w{{w}} {{i:05d}} ' + 'abcdefgh' * 50) for i in range({LINES})]\"; exec sleep 1000"
    );
    let mut harness = Harness::new(config_with(
        None,
        vec![json!({
            "id": "writer",
            "command": script,
            "replicas": 3,
            "logFile": "shared/all.log"
        })],
    ));
    harness.start();
    harness.deploy("v1");
    let path = harness.path("shared/all.log");
    wait_until(PATIENCE, "every line of every writer", || {
        file_lines(&path).len() == 3 * LINES
    });
    let body = "abcdefgh".repeat(50);
    let mut next = [0usize; 3];
    for line in file_lines(&path) {
        let (writer, rest) = line.split_at(2);
        let index: usize = writer[1..]
            .parse()
            .unwrap_or_else(|_| panic!("torn: {line}"));
        let (number, text) = rest[1..]
            .split_once(' ')
            .unwrap_or_else(|| panic!("torn: {line}"));
        assert_eq!(text, body, "torn: {line}");
        assert_eq!(
            number.parse::<usize>().unwrap(),
            next[index],
            "out of order: {line}"
        );
        next[index] += 1;
    }
    assert_eq!(next, [LINES; 3]);
    assert_eq!(process_dropped_lines(&harness), 0);
    assert_eq!(harness.shutdown(), 0);
}

/// A live file last written three hours ago, plus older dated files; returns
/// the dated name the live file must get.
fn stale_log(path: &Path, older: &[&str]) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "from an earlier run\n").unwrap();
    let three_hours_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(three_hours_ago)
        .unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for period in older {
        std::fs::write(path.with_file_name(format!("{name}.{period}")), "x\n").unwrap();
    }
    format!(
        "{name}.{}",
        chrono::DateTime::<chrono::Utc>::from(three_hours_ago).format("%Y-%m-%d-%H")
    )
}

fn dated_files(dir: &Path, name: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|file| file.starts_with(&format!("{name}.")))
        .collect();
    names.sort();
    names
}

#[test]
fn rotation_dates_the_old_file_and_keeps_n() {
    clear_of_the_hour_boundary();
    let mut harness = Harness::new(config_with(
        // A plain path follows the daemon's --log-rotation / --log-keep.
        Some(json!("logs/web.log")),
        vec![ticker(
            "ticker",
            "service",
            "0.2",
            json!({"path": "logs/ticker.log", "rotation": "hourly", "keep": 2}),
        )],
    ));
    let logs = harness.path("logs");
    let web_rolled = stale_log(&logs.join("web.log"), &["2020-01-01-00", "2020-01-01-01"]);
    let ticker_rolled = stale_log(
        &logs.join("ticker.log"),
        &["2020-01-01-00", "2020-01-01-01", "2020-01-01-02"],
    );
    let daemon_log = harness.path("daemon.log");
    harness.start_logging_to(
        &daemon_log,
        &["--log-rotation", "hourly", "--log-keep", "1"],
    );
    harness.deploy("v1");
    harness.track_processes();
    wait_until(PATIENCE, "new lines in both live files", || {
        file_lines(&logs.join("web.log"))
            .iter()
            .any(|l| l == "stderr hello from v1")
            && file_lines(&logs.join("ticker.log"))
                .iter()
                .any(|l| l == "out 0")
    });
    assert_eq!(
        dated_files(&logs, "web.log"),
        std::slice::from_ref(&web_rolled)
    );
    assert_eq!(
        dated_files(&logs, "ticker.log"),
        [
            "ticker.log.2020-01-01-02".to_string(),
            ticker_rolled.clone()
        ]
    );
    for rolled in [web_rolled, ticker_rolled] {
        assert_eq!(
            std::fs::read_to_string(logs.join(&rolled)).unwrap(),
            "from an earlier run\n"
        );
    }
    assert!(!file_lines(&logs.join("web.log")).contains(&"from an earlier run".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn sighup_moves_new_lines_to_a_new_file() {
    let mut harness = Harness::new(config_with(
        None,
        vec![ticker("ticker", "service", "0.02", json!("t.log"))],
    ));
    harness.start();
    harness.deploy("v1");
    let live = harness.path("t.log");
    let renamed = harness.path("t.log.1");
    wait_until(PATIENCE, "the first lines", || file_lines(&live).len() >= 4);
    std::fs::rename(&live, &renamed).unwrap();
    // Until the signal, lines keep going to the renamed file.
    let before = file_lines(&renamed).len();
    wait_until(PATIENCE, "lines in the renamed file", || {
        file_lines(&renamed).len() > before + 2
    });
    harness.signal(libc::SIGHUP);
    wait_until(PATIENCE, "lines in a new file at the path", || {
        file_lines(&live).len() >= 4
    });
    let number = |line: &String| -> u64 { line[4..].parse().unwrap() };
    let old_last = file_lines(&renamed)
        .iter()
        .filter(|l| l.starts_with("out "))
        .map(number)
        .max()
        .unwrap();
    let new_first = file_lines(&live)
        .iter()
        .filter(|l| l.starts_with("out "))
        .map(number)
        .min()
        .unwrap();
    assert_eq!(new_first, old_last + 1, "no line lost or duplicated");
    assert_eq!(harness.status()["activeReleaseId"], "v1");
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_file_that_cannot_be_opened_is_reported_and_the_process_runs() {
    let mut harness = Harness::new(config_with(Some(json!("blocker/web.log")), vec![]));
    let blocker = harness.path("blocker");
    std::fs::write(&blocker, "a plain file, not a folder\n").unwrap();
    harness.start();
    harness.deploy("v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let failure = poll(PATIENCE, || {
        events_of(&harness)
            .into_iter()
            .find(|e| e["message"] == "process log file failed")
    })
    .expect("a `process log file failed` event");
    let data = &failure["data"];
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["processId", "releaseId", "error", "id", "path"],
        "{data}"
    );
    assert_eq!(data["processId"], "web");
    assert_eq!(data["releaseId"], "v1");
    assert_eq!(
        data["path"],
        blocker.join("web.log").to_string_lossy().as_ref()
    );
    let error = data["error"].as_str().unwrap();
    assert!(error.starts_with("cannot create the folder"), "{error}");
    assert!(error.contains(&*blocker.to_string_lossy()), "{error}");
    // The output still reaches the ring; the lines meant for the file are counted.
    let web = harness.process_in("v1", "web").unwrap();
    assert_eq!(web["state"], "running");
    assert!(
        web["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "stderr hello from v1"),
        "{web}"
    );
    // Every line meant for the file is counted: the two start lines, and any
    // more the app wrote (a restart after losing its port to another test on a
    // busy machine writes its traceback too).
    wait_until(
        PATIENCE,
        "every line meant for the file counted as dropped",
        || {
            let produced = harness
                .process_in("v1", "web")
                .and_then(|web| web["logs"].as_array().map(|lines| lines.len() as u64))
                .unwrap_or(0);
            produced >= 2 && process_dropped_lines(&harness) == produced
        },
    );
    // The daemon keeps serving and deploying.
    harness.deploy("v2");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    assert_eq!(harness.shutdown(), 0);
}
