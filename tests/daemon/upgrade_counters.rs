//! Counters across a live upgrade (docs/upgrade.md, docs/metrics.md): every
//! counter and histogram of `/metrics` and the dropped-line counts of
//! `status.logging` continue in the new image instead of starting again at
//! zero. Real daemon, real requests, real dropped lines (the daemon logs to
//! `/dev/full`; the app's log file sits below a regular file).

use super::upgrade::upgrade_ok;
use crate::support::daemon::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Samples of `/metrics` by series (`name{labels}`).
pub(super) type Samples = BTreeMap<String, f64>;

/// Series that are gauges: read from live state, not carried.
const GAUGES: [&str; 6] = [
    "rollbridge_http_in_flight_requests",
    "rollbridge_websocket_connections",
    "rollbridge_active_release",
    "rollbridge_rollout_phase",
    "rollbridge_rollout_percent",
    "rollbridge_process_resident_memory_bytes",
];

/// Counters that move by themselves: the supervision sampler's `/proc` passes,
/// and the daemon log's dropped lines (every event of the upgrade is one).
const MOVING: [&str; 2] = [
    "rollbridge_proc_scans_total",
    "rollbridge_log_lines_dropped_total{log=\"daemon\"}",
];

pub(super) fn scrape(port: u16) -> Samples {
    let (code, body) = http_get(port, "/metrics").expect("scrape /metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn counters(samples: &Samples) -> Samples {
    samples
        .iter()
        .filter(|(series, _)| !GAUGES.iter().any(|g| series.starts_with(g)))
        .map(|(series, value)| (series.clone(), *value))
        .collect()
}

pub(super) fn sample(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The web app logs into a file that cannot be opened (its folder is a regular
/// file): each of its start lines is a dropped process line. A companion that
/// prints nothing is there to be killed.
fn counters_config(dir: &std::path::Path, port: u16) -> Value {
    std::fs::write(dir.join("not-a-folder"), "").unwrap();
    let mut config = base_config(dir, port);
    config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
    config["processes"][0]["logFile"] = json!(dir.join("not-a-folder/web.log"));
    config["processes"][0]["health"]["timeoutMs"] = json!(1500);
    config["processes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "sleeper", "policy": "companion", "command": "exec sleep 1000"}));
    config
}

#[test]
fn every_counter_and_the_logging_counts_continue_across_an_upgrade() {
    let mut harness = Harness::new(counters_config);
    harness.daemon = Some(harness.spawn(&["--log-file", "/dev/full"]));
    let answering = poll(PATIENCE, || {
        control_raw(&harness.socket, r#"{"command":"status"}"#).ok()
    });
    assert!(
        answering.is_some(),
        "the daemon answers on its control socket"
    );
    let metrics = events_of(&harness)
        .iter()
        .find(|e| e["message"] == "metrics listening")
        .map(|e| e["data"]["port"].as_u64().unwrap() as u16)
        .expect("a metrics listening event");

    // Something in every counter: unrouted requests, a deploy and a failed one,
    // health probes, requests of three classes, a crash restart.
    for _ in 0..2 {
        assert_eq!(harness.get("/release").0, 503);
    }
    harness.deploy("v1");
    harness.track_processes();
    harness.deploy_err("bad");
    for _ in 0..5 {
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }
    assert_eq!(harness.get("/missing").0, 404);
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "hi"), "hi");
    ws_close(socket);
    let sleeper = pid_of(&harness.process_in("v1", "sleeper").unwrap());
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
    wait_until(PATIENCE, "the companion to be restarted", || {
        harness.process_in("v1", "sleeper").unwrap()["restarts"] == 1
    });
    harness.track_processes();
    // Two web starts (v1 and the failed "bad"), two lines each, none written.
    wait_until(PATIENCE, "the app's lines to be counted as dropped", || {
        harness.status()["logging"]["processDroppedLines"] == 4
    });
    wait_until(PATIENCE, "the WebSocket handshake to be counted", || {
        sample(
            &scrape(metrics),
            "rollbridge_http_requests_total{release=\"v1\",class=\"1xx\"}",
        ) == 1.0
    });

    let before = counters(&scrape(metrics));
    let logging_before = harness.status()["logging"].clone();
    for (series, at_least) in [
        (
            "rollbridge_http_requests_total{release=\"v1\",class=\"2xx\"}",
            5.0,
        ),
        (
            "rollbridge_http_requests_total{release=\"v1\",class=\"4xx\"}",
            1.0,
        ),
        ("rollbridge_http_unrouted_requests_total", 2.0),
        (
            "rollbridge_http_request_duration_seconds_count{release=\"v1\"}",
            7.0,
        ),
        (
            "rollbridge_deploys_total{kind=\"deploy\",result=\"success\"}",
            1.0,
        ),
        (
            "rollbridge_deploys_total{kind=\"deploy\",result=\"failure\"}",
            1.0,
        ),
        (
            "rollbridge_deploy_duration_seconds_count{result=\"failure\"}",
            1.0,
        ),
        (
            "rollbridge_process_restarts_total{process=\"sleeper\",reason=\"crash\"}",
            1.0,
        ),
        ("rollbridge_proc_scans_total", 1.0),
        ("rollbridge_log_lines_dropped_total{log=\"daemon\"}", 1.0),
        ("rollbridge_log_lines_dropped_total{log=\"process\"}", 4.0),
    ] {
        assert!(
            sample(&before, series) >= at_least,
            "{series} in {before:#?}"
        );
    }
    assert!(
        before
            .iter()
            .any(|(series, n)| series.starts_with("rollbridge_hook_calls_total{") && *n > 0.0),
        "health probes are counted: {before:#?}"
    );
    assert!(logging_before["droppedLines"].as_u64().unwrap() > 0);

    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    upgrade_ok(&harness, None);
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);

    let after = counters(&scrape(metrics));
    for (series, value) in &before {
        let now = after.get(series).copied();
        if MOVING.contains(&series.as_str()) {
            assert!(now >= Some(*value), "{series}: {value} -> {now:?}");
        } else {
            assert_eq!(now, Some(*value), "{series} went on from where it was");
        }
    }
    let logging_after = harness.status()["logging"].clone();
    assert_eq!(
        logging_after["processDroppedLines"], logging_before["processDroppedLines"],
        "{logging_after}"
    );
    assert!(
        logging_after["droppedLines"].as_u64() >= logging_before["droppedLines"].as_u64(),
        "{logging_before} -> {logging_after}"
    );
    assert_eq!(
        sample(&after, "rollbridge_log_lines_dropped_total{log=\"daemon\"}"),
        logging_after["droppedLines"].as_f64().unwrap(),
        "status and /metrics count the same lines"
    );

    // The new image counts on in the same series.
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let later = counters(&scrape(metrics));
    let ok = "rollbridge_http_requests_total{release=\"v1\",class=\"2xx\"}";
    assert_eq!(sample(&later, ok), sample(&before, ok) + 1.0);
    // The active release's gauges read its live counters again.
    let gauges = scrape(metrics);
    assert_eq!(
        sample(&gauges, "rollbridge_active_release{release=\"v1\"}"),
        1.0
    );
    assert_eq!(harness.shutdown(), 0);
}
