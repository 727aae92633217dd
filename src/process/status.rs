//! The `Process` object of `status` ([`ProcessStatus`]): keys that are absent
//! rather than `null` when they do not apply.

use super::definition::ProcessState;
use super::managed::ManagedProcess;
use super::output::LogLine;
use crate::control::status::{ChildStatus, ProcessStatus};
use crate::util::time::iso;
use serde_json::{Map, Value};

impl ManagedProcess {
    /// This process as `status` shows it.
    pub fn status(&self) -> ProcessStatus {
        let inner = self.lock();
        let def = &inner.def;
        let (exit_code, exit_signal) = match &inner.exit {
            Some((code, signal)) => (Some(*code), Some(signal.clone())),
            None => (None, None),
        };
        let running = inner.state == ProcessState::Running;
        ProcessStatus {
            children: inner
                .children
                .iter()
                .map(|member| ChildStatus {
                    command: member.command.clone(),
                    pid: member.pid,
                    rss_bytes: member.rss_bytes,
                })
                .collect(),
            command: def.command.clone(),
            cwd: def.cwd.to_string_lossy().into_owned(),
            exit_code,
            exit_signal,
            id: def.instance_id.clone(),
            last_memory_restart_at: inner.last_memory_restart_at.map(iso),
            last_start_reason: inner.last_start_reason.map(|r| r.as_str().to_string()),
            logs: inner.logs.lines().map(LogLine::to_status).collect(),
            memory_restarts: inner.memory_restarts,
            pid: inner.child.as_ref().map(|child| child.pid),
            restarts: inner.restarts,
            rss_bytes: inner.rss_bytes,
            started_at: inner.started_at.map(iso),
            state: inner.state.as_str().to_string(),
            uptime_ms: inner
                .started_instant
                .filter(|_| running)
                .map(|started| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// [`ManagedProcess::status`] as a JSON object.
    pub fn status_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self.status()) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}
