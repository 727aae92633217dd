//! Stopping the processes of a supervisor that ran before rollbridge
//! (`legacyTakeover`), for `predeploy-cleanup`.
//!
//! Which processes are "legacy" is decided by matcher plugins from the registry:
//! `legacyTakeover.processes` become `cmdline` matchers, `legacyTakeover.screens` a
//! `screen` matcher, and `legacyTakeover.matchers` adds any other hook. The process
//! table is read from `/proc`. Matching processes and all their descendants get
//! SIGTERM; whatever is still running when the grace period ends gets SIGKILL.
//! This command and its ancestors, and a daemon that is kept running with all its
//! descendants and managed process groups, are never touched.

use crate::config::LoadedConfig;
use crate::config::hook::HookSpec;
use crate::config::model::LegacyTakeover;
use crate::daemon::setup::registry_for;
use crate::plugins::{LegacyProcess, MatcherPlugin, Registry};
use crate::process::proc_table::{proc_table, read_stat};
use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one matcher may take to judge one process.
const MATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `screen -S <name> -X quit` may take.
const SCREEN_QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A matcher with the label used in messages.
pub struct LegacyMatcher {
    pub label: String,
    pub plugin: Arc<dyn MatcherPlugin>,
}

/// The registry the legacy matchers are resolved from: the same one the daemon
/// builds for this config (built-in plugins, native libraries, ...).
pub fn matcher_registry(config: &LoadedConfig) -> anyhow::Result<Registry> {
    registry_for(config).map_err(|error| anyhow::anyhow!("cannot set up the plugins: {error}"))
}

/// Every matcher a `legacyTakeover` section asks for, resolved through `registry`.
pub fn legacy_matchers(
    takeover: &LegacyTakeover,
    registry: &Registry,
) -> anyhow::Result<Vec<LegacyMatcher>> {
    let mut specs: Vec<(String, HookSpec)> = Vec::new();
    for matcher in &takeover.processes {
        let mut options = Map::new();
        options.insert(
            "includes".into(),
            Value::from(
                matcher
                    .includes
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
        );
        specs.push((
            matcher.name.clone(),
            HookSpec::Plugin {
                name: "cmdline".into(),
                options,
            },
        ));
    }
    if !takeover.screens.is_empty() {
        let mut options = Map::new();
        options.insert(
            "name".into(),
            Value::from(
                takeover
                    .screens
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
        );
        specs.push((
            format!("screens {}", takeover.screens.join(", ")),
            HookSpec::Plugin {
                name: "screen".into(),
                options,
            },
        ));
    }
    for (index, spec) in takeover.matchers.iter().enumerate() {
        specs.push((
            format!("legacyTakeover.matchers[{index}] ({})", spec.plugin_name()),
            spec.clone(),
        ));
    }
    specs
        .into_iter()
        .map(|(label, spec)| {
            let plugin = registry
                .matcher(&spec)
                .with_context(|| format!("cannot use the legacy matcher {label}"))?;
            Ok(LegacyMatcher { label, plugin })
        })
        .collect()
}

/// What the legacy cleanup did.
#[derive(Debug, Default)]
pub struct LegacyCleanup {
    /// The processes that were signalled and are gone now.
    pub stopped: Vec<LegacyProcess>,
    /// Per-process problems that did not stop the run (for example EPERM on a
    /// process that exited anyway).
    pub warnings: Vec<String>,
}

/// Stops every legacy process. Fails when a matching process is still running
/// afterwards, listing those processes.
pub fn stop_legacy_processes(
    takeover: &LegacyTakeover,
    matchers: &[LegacyMatcher],
    protected_groups: &HashSet<i32>,
    protected_roots: &HashSet<i32>,
) -> anyhow::Result<LegacyCleanup> {
    for name in &takeover.screens {
        quit_screen(name);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the matcher runtime")?;

    let table = read_table()?;
    let protected = protected_pids(&table, protected_groups, protected_roots);
    let seeds = matching(&runtime, &table, &protected, matchers)?;
    let targets = with_descendants(&table, &seeds, &protected);

    let mut cleanup = LegacyCleanup::default();
    let mut waiting: Vec<(LegacyProcess, u64)> = Vec::new();
    for process in targets {
        let Some(stat) = read_stat(process.pid).filter(|s| s.is_live()) else {
            continue;
        };
        match kill(Pid::from_raw(process.pid), Signal::SIGTERM) {
            Ok(()) => waiting.push((process, stat.start_time)),
            Err(Errno::ESRCH) => {}
            Err(errno) => cleanup.warnings.push(format!(
                "could not send SIGTERM to legacy process {} ({}): {}",
                process.pid,
                process.cmdline,
                errno.desc()
            )),
        }
    }
    let grace = Duration::from_millis(takeover.force_stop_timeout_ms);
    wait_gone(&mut waiting, grace, &mut cleanup.stopped);
    if !waiting.is_empty() {
        // Survivors may have started children during the grace period.
        let table = read_table()?;
        let protected = protected_pids(&table, protected_groups, protected_roots);
        let survivors: Vec<LegacyProcess> = waiting.iter().map(|(p, _)| p.clone()).collect();
        let known: HashSet<i32> = survivors.iter().map(|p| p.pid).collect();
        for process in with_descendants(&table, &survivors, &protected) {
            if known.contains(&process.pid) {
                continue;
            }
            if let Some(stat) = read_stat(process.pid).filter(|s| s.is_live()) {
                waiting.push((process, stat.start_time));
            }
        }
    }
    for (process, _) in &waiting {
        match kill(Pid::from_raw(process.pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => cleanup.warnings.push(format!(
                "could not send SIGKILL to legacy process {} ({}): {}",
                process.pid,
                process.cmdline,
                errno.desc()
            )),
        }
    }
    wait_gone(&mut waiting, KILL_WAIT, &mut cleanup.stopped);

    let table = read_table()?;
    let protected = protected_pids(&table, protected_groups, protected_roots);
    let survivors: Vec<LegacyProcess> = matching(&runtime, &table, &protected, matchers)?
        .into_iter()
        .filter(|p| read_stat(p.pid).is_some_and(|s| s.is_live()))
        .collect();
    if !survivors.is_empty() {
        let mut message =
            String::from("Refusing Rollbridge deploy while legacy processes are still running:");
        for process in &survivors {
            message.push_str(&format!("\n{} {}", process.pid, process.cmdline));
        }
        for warning in &cleanup.warnings {
            message.push_str(&format!("\n({warning})"));
        }
        bail!(message);
    }
    Ok(cleanup)
}

fn read_table() -> anyhow::Result<Vec<LegacyProcess>> {
    proc_table().context("Failed to inspect running processes: cannot read /proc")
}

/// Asks screen to end the session cleanly. Nothing depends on it working (screen
/// may not even be installed): the process-table pass stops the session anyway.
fn quit_screen(name: &str) {
    let Ok(mut child) = Command::new("screen")
        .args(["-S", name, "-X", "quit"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let deadline = Instant::now() + SCREEN_QUIT_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

/// This process and its ancestors, the protected roots with all their
/// descendants, and every member of the protected groups.
fn protected_pids(
    table: &[LegacyProcess],
    protected_groups: &HashSet<i32>,
    protected_roots: &HashSet<i32>,
) -> HashSet<i32> {
    let parents: BTreeMap<i32, i32> = table.iter().map(|p| (p.pid, p.ppid)).collect();
    let mut protected = HashSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 0 && protected.insert(pid) {
        pid = parents.get(&pid).copied().unwrap_or(0);
    }
    let roots: Vec<LegacyProcess> = table
        .iter()
        .filter(|p| protected_roots.contains(&p.pid))
        .cloned()
        .collect();
    protected.extend(
        with_descendants(table, &roots, &HashSet::new())
            .iter()
            .map(|p| p.pid),
    );
    if !protected_groups.is_empty() {
        for process in table {
            if read_stat(process.pid).is_some_and(|s| protected_groups.contains(&s.pgrp)) {
                protected.insert(process.pid);
            }
        }
    }
    protected
}

/// The unprotected processes at least one matcher selects.
fn matching(
    runtime: &tokio::runtime::Runtime,
    table: &[LegacyProcess],
    protected: &HashSet<i32>,
    matchers: &[LegacyMatcher],
) -> anyhow::Result<Vec<LegacyProcess>> {
    runtime.block_on(async {
        let mut selected = Vec::new();
        for process in table.iter().filter(|p| !protected.contains(&p.pid)) {
            for matcher in matchers {
                let deadline = tokio::time::Instant::now() + MATCH_TIMEOUT;
                let verdict = tokio::time::timeout(
                    MATCH_TIMEOUT,
                    matcher.plugin.matches(process.clone(), deadline),
                )
                .await;
                match verdict {
                    Ok(Ok(true)) => {
                        selected.push(process.clone());
                        break;
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => bail!(
                        "The legacy matcher {} failed on process {} ({}): {error}. Nothing was stopped.",
                        matcher.label,
                        process.pid,
                        process.cmdline
                    ),
                    Err(_) => bail!(
                        "The legacy matcher {} did not decide on process {} ({}) within {} s. Nothing was stopped.",
                        matcher.label,
                        process.pid,
                        process.cmdline,
                        MATCH_TIMEOUT.as_secs()
                    ),
                }
            }
        }
        Ok(selected)
    })
}

/// The seeds plus every (unprotected) descendant, following parent links.
fn with_descendants(
    table: &[LegacyProcess],
    seeds: &[LegacyProcess],
    protected: &HashSet<i32>,
) -> Vec<LegacyProcess> {
    let mut chosen: Vec<LegacyProcess> = seeds.to_vec();
    let mut known: HashSet<i32> = seeds.iter().map(|p| p.pid).collect();
    let mut grew = true;
    while grew {
        grew = false;
        for process in table {
            if !known.contains(&process.pid)
                && known.contains(&process.ppid)
                && !protected.contains(&process.pid)
            {
                known.insert(process.pid);
                chosen.push(process.clone());
                grew = true;
            }
        }
    }
    chosen
}

/// Polls until every waiting process has exited (zombies count as exited, and so
/// does a pid that now belongs to a younger process), moving the gone ones to
/// `stopped`.
fn wait_gone(
    waiting: &mut Vec<(LegacyProcess, u64)>,
    bound: Duration,
    stopped: &mut Vec<LegacyProcess>,
) {
    let deadline = Instant::now() + bound;
    loop {
        waiting.retain(|(process, start_time)| {
            let alive =
                read_stat(process.pid).is_some_and(|s| s.is_live() && s.start_time == *start_time);
            if !alive {
                stopped.push(process.clone());
            }
            alive
        });
        if waiting.is_empty() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::builtin::BuiltinPlugins;

    fn process(pid: i32, ppid: i32, cmdline: &str) -> LegacyProcess {
        LegacyProcess {
            pid,
            ppid,
            cmdline: cmdline.into(),
            cwd: None,
            user: None,
        }
    }

    #[test]
    fn descendants_follow_parent_links_but_skip_protected() {
        let table = vec![
            process(10, 1, "legacy"),
            process(11, 10, "child"),
            process(12, 11, "grandchild"),
            process(13, 10, "protected child"),
            process(14, 1, "other"),
        ];
        let protected: HashSet<i32> = [13].into();
        let chosen: Vec<i32> = with_descendants(&table, &table[..1], &protected)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(chosen, vec![10, 11, 12]);
    }

    #[test]
    fn config_matchers_resolve_in_order() {
        let takeover = LegacyTakeover {
            force_stop_timeout_ms: 100,
            screens: vec!["app".into()],
            processes: vec![crate::config::model::LegacyProcessMatcher {
                includes: vec!["node".into(), "server.js".into()],
                name: "legacy process 1".into(),
            }],
            matchers: vec![],
        };
        let registry = Registry::new(vec![Arc::new(BuiltinPlugins)]);
        let matchers = legacy_matchers(&takeover, &registry).unwrap();
        let labels: Vec<&str> = matchers.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, vec!["legacy process 1", "screens app"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let table = vec![
            process(20, 1, "node /srv/app/server.js"),
            process(21, 1, "SCREEN -dmS app ./run"),
            process(22, 1, "SCREEN -dmS app2 ./run"),
            process(23, 1, "node other.js"),
        ];
        let hits: Vec<i32> = matching(&runtime, &table, &HashSet::new(), &matchers)
            .unwrap()
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(hits, vec![20, 21]);
    }
}
