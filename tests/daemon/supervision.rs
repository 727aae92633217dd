//! Supervision at scale and of whole process trees, on the real daemon:
//! one `/proc` pass per tick for hundreds of memory-supervised replicas,
//! `children` filled for every process, and processes that left their group
//! (`setsid`, double fork) stopped at retire, after a failed deploy and at
//! shutdown — with per-process cgroups and without them.
//!
//! Liveness is checked by pid with the independent `/proc` reader of
//! `tests/common`, never with rollbridge's own.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Disables per-process cgroups for a daemon (the fallback mode).
const NO_CGROUPS: (&str, &str) = ("ROLLBRIDGE_CGROUPS", "off");

/// A command that starts two processes outside its group before running
/// `main`: `setsid sleep` in the background (its parent stays the app), and a
/// double-forked `setsid sleep` whose parent exits at once (so it is adopted by
/// the daemon). Their pids land in `<release>/<name>-escaped.pid` and
/// `<release>/<name>-grandchild.pid`.
fn escaping(name: &str, main: &str) -> String {
    format!(
        "setsid sleep 3000 & echo $! > \"$ROLLBRIDGE_RELEASE_PATH/{name}-escaped.pid\"; \
         sh -c 'setsid sleep 3001 & echo $! > \"$ROLLBRIDGE_RELEASE_PATH/{name}-grandchild.pid\"'; \
         {main}"
    )
}

/// The escaped and the double-forked pid a release's process wrote, once both
/// are written; they are also registered for the harness to kill on drop.
fn escaped_pids(harness: &Harness, release: &str, name: &str) -> Vec<i32> {
    let dir = harness.path("releases").join(release);
    let pids: Vec<i32> = ["escaped", "grandchild"]
        .iter()
        .map(|kind| {
            let file = dir.join(format!("{name}-{kind}.pid"));
            poll(LONG_PATIENCE, || {
                std::fs::read_to_string(&file)
                    .ok()?
                    .trim()
                    .parse::<i32>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{} was not written", file.display()))
        })
        .collect();
    harness
        .extra_pids
        .lock()
        .unwrap()
        .extend(pids.iter().copied());
    pids
}

fn assert_stopped(pids: &[i32], when: &str) {
    if poll(Duration::from_secs(20), || {
        (!pids.iter().any(|&pid| pid_alive(pid))).then_some(())
    })
    .is_none()
    {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        panic!("{when}: {alive:?} of {pids:?} still running");
    }
}

/// A config whose web app and `worker` companion both escape their group.
fn escaping_config(dir: &Path, port: u16) -> Value {
    let mut config = base_config(dir, port);
    config["proxy"]["healthTimeoutMs"] = json!(3000);
    config["processes"][0]["health"]["timeoutMs"] = json!(3000);
    config["processes"][0]["command"] = json!(escaping("web", &python("app.py")));
    config["processes"].as_array_mut().unwrap().push(json!({
        "id": "worker", "policy": "companion",
        "command": escaping("worker", "exec sleep 1000"),
        "gracefulStopMs": 2000
    }));
    config
}

fn escaped_processes_are_stopped(env: &[(&str, &str)]) {
    let mut harness = Harness::new(escaping_config);
    harness.start_with_env(env);
    harness.deploy("v1");
    let mut first = escaped_pids(&harness, "v1", "web");
    first.extend(escaped_pids(&harness, "v1", "worker"));
    assert!(first.iter().all(|&pid| pid_alive(pid)), "{first:?}");

    // Retire: v2 replaces v1, and nothing of v1 may keep running.
    harness.deploy("v2");
    assert_stopped(&first, "after v1 retired");

    // A failed deploy stops what it started, escaped processes included.
    let error = harness.deploy_err("bad1");
    assert!(error.contains("Health check failed"), "{error}");
    assert_stopped(
        &escaped_pids(&harness, "bad1", "web"),
        "after the failed deploy",
    );

    // Shutdown: nothing of the daemon's processes survives it.
    let mut second = escaped_pids(&harness, "v2", "web");
    second.extend(escaped_pids(&harness, "v2", "worker"));
    assert!(second.iter().all(|&pid| pid_alive(pid)), "{second:?}");
    assert_eq!(harness.shutdown(), 0);
    assert_stopped(&second, "after shutdown");
}

#[test]
fn escaped_and_double_forked_processes_are_stopped_without_cgroups() {
    escaped_processes_are_stopped(&[NO_CGROUPS]);
}

#[test]
fn escaped_and_double_forked_processes_are_stopped_with_cgroups_where_possible() {
    escaped_processes_are_stopped(&[]);
}

/// Whether this machine lets a daemon create cgroups (root in a writable
/// cgroup v2 hierarchy, as the daemon's own detection decides).
fn cgroups_available() -> bool {
    rollbridge::process::cgroup::enable().is_ok()
}

#[test]
fn each_process_gets_a_cgroup_of_its_own_when_the_hierarchy_is_writable() {
    if !cgroups_available() {
        println!("SKIPPED: no writable cgroup v2 hierarchy here");
        return;
    }
    let mut harness = Harness::new(escaping_config);
    harness.start();
    harness.deploy("v1");
    let web = pid_of(&harness.process_in("v1", "web").unwrap());
    let worker = pid_of(&harness.process_in("v1", "worker").unwrap());
    let escaped = escaped_pids(&harness, "v1", "worker");
    let cgroup_of = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .unwrap()
    };
    let (web_cgroup, worker_cgroup) = (cgroup_of(web), cgroup_of(worker));
    assert!(web_cgroup.contains("/rollbridge-"), "{web_cgroup}");
    assert_ne!(web_cgroup, worker_cgroup);
    for pid in escaped {
        assert_eq!(cgroup_of(pid), worker_cgroup, "pid {pid} left its cgroup");
    }
    assert_eq!(harness.shutdown(), 0);
    let dir = cgroup2_mount().join(worker_cgroup.trim_start_matches('/'));
    assert!(!dir.exists(), "{} is removed after shutdown", dir.display());
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|fs| fs.starts_with("cgroup2 "))
        })
        .expect("a cgroup2 mount");
    line.split_whitespace().nth(4).unwrap().into()
}

#[test]
fn children_are_filled_for_every_process_not_only_with_a_memory_block() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion",
            "command": "sleep 1000 & wait"
        }));
        config
    });
    harness.start_with_env(&[NO_CGROUPS]);
    harness.deploy("v1");
    let worker = wait_for_children(&harness, "worker", 2);
    let pid = pid_of(&worker);
    let children = worker["children"].as_array().unwrap();
    assert_eq!(children[0]["pid"], pid, "sorted by pid, the shell first");
    assert_eq!(children[0]["command"], "sh");
    assert_eq!(children[1]["command"], "sleep");
    assert!(children.iter().all(|c| c["rssBytes"].as_u64().unwrap() > 0));
    assert_eq!(
        children[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["command", "pid", "rssBytes"]
    );
    assert!(
        worker.get("rssBytes").is_none(),
        "no memory block: {worker}"
    );
    let web = wait_for_children(&harness, "web", 1);
    assert_eq!(web["children"][0]["pid"], pid_of(&web));
}

fn wait_for_children(harness: &Harness, id: &str, at_least: usize) -> Value {
    poll(LONG_PATIENCE, || {
        let process = harness.process_in("v1", id)?;
        (process["children"].as_array()?.len() >= at_least).then_some(process)
    })
    .unwrap_or_else(|| panic!("{id} never showed {at_least} children"))
}

fn scrape_proc_scans(port: u16) -> u64 {
    let (status, body) = http_get(port, "/metrics").expect("a metrics scrape");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("rollbridge_proc_scans_total "))
        .expect("rollbridge_proc_scans_total in the scrape")
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn two_hundred_memory_supervised_replicas_share_one_proc_pass_per_tick() {
    const REPLICAS: usize = 200;
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000",
            "replicas": REPLICAS,
            "memory": {"limitBytes": 1u64 << 30, "checkIntervalMs": 1000}
        }));
        config
    });
    harness.start_with_env(&[NO_CGROUPS]);
    harness.deploy("v1");
    let port = metrics_port(&harness);

    // Every replica gets its verdict input (rssBytes) and its children.
    let workers = poll(LONG_PATIENCE, || {
        let release = harness.release_status("v1")?;
        let workers: Vec<Value> = release["processes"]
            .as_array()?
            .iter()
            .filter(|p| p["id"].as_str().unwrap().starts_with("worker#"))
            .cloned()
            .collect();
        let sampled = workers.len() == REPLICAS
            && workers.iter().all(|w| {
                w["rssBytes"].as_u64().unwrap_or(0) > 0
                    && w["children"].as_array().is_some_and(|c| c.len() == 1)
            });
        sampled.then_some(workers)
    })
    .expect("every replica sampled");
    for worker in &workers {
        let child = &worker["children"][0];
        assert_eq!(child["pid"], worker["pid"], "{worker}");
        assert_eq!(child["command"], "sleep");
        assert_eq!(child["rssBytes"], worker["rssBytes"]);
    }

    // Over a few seconds the daemon reads /proc about once a second for all
    // 200 (a scan per process per tick would be ~200 a second).
    let before = scrape_proc_scans(port);
    let window = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let after = scrape_proc_scans(port);
    let seconds = window.elapsed().as_secs_f64();
    // One of the counted scans is the second scrape's own (metrics RSS).
    let passes = after - before - 1;
    assert!(
        passes as f64 <= seconds + 2.0,
        "{passes} /proc passes in {seconds:.1} s for {REPLICAS} replicas"
    );
    assert!(
        passes >= 2,
        "the sampler ticks: {passes} passes in {seconds:.1} s"
    );
}
