//! The `Process` object of `status` (protocol.md §4.3): exact key order, and keys
//! that are absent rather than `null` when they do not apply.

use super::definition::ProcessState;
use super::managed::ManagedProcess;
use crate::util::time::iso;
use serde_json::{Map, Value};

impl ManagedProcess {
    pub fn status_json(&self) -> Map<String, Value> {
        let inner = self.lock();
        let def = &inner.def;
        let mut out = Map::new();
        let children: Vec<Value> = inner
            .children
            .iter()
            .map(|member| {
                let mut child = Map::new();
                child.insert("command".into(), member.command.clone().into());
                child.insert("pid".into(), member.pid.into());
                if let Some(rss) = member.rss_bytes {
                    child.insert("rssBytes".into(), rss.into());
                }
                Value::Object(child)
            })
            .collect();
        out.insert("children".into(), children.into());
        out.insert("command".into(), def.command.clone().into());
        out.insert("cwd".into(), def.cwd.to_string_lossy().into_owned().into());
        if let Some((code, signal)) = &inner.exit {
            out.insert("exitCode".into(), (*code).into());
            out.insert("exitSignal".into(), signal.clone().into());
        }
        out.insert("id".into(), def.instance_id.clone().into());
        if let Some(at) = inner.last_memory_restart_at {
            out.insert("lastMemoryRestartAt".into(), iso(at).into());
        }
        if let Some(reason) = inner.last_start_reason {
            out.insert("lastStartReason".into(), reason.as_str().into());
        }
        let logs: Vec<Value> = inner.logs.lines().map(|l| l.to_json()).collect();
        out.insert("logs".into(), logs.into());
        out.insert("memoryRestarts".into(), inner.memory_restarts.into());
        if let Some(child) = &inner.child {
            out.insert("pid".into(), child.pid.into());
        }
        out.insert("restarts".into(), inner.restarts.into());
        if let Some(rss) = inner.rss_bytes {
            out.insert("rssBytes".into(), rss.into());
        }
        if let Some(at) = inner.started_at {
            out.insert("startedAt".into(), iso(at).into());
        }
        out.insert("state".into(), inner.state.as_str().into());
        if inner.state == ProcessState::Running
            && let Some(started) = inner.started_instant
        {
            let uptime = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            out.insert("uptimeMs".into(), uptime.into());
        }
        out
    }
}
