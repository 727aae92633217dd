//! `warnings` in the replies of deploy, rollback, restart, stop and shutdown:
//! every lifecycle hook that failed while the command ran, so a failing hook is
//! no longer a plain `success` visible only in `events`. The key is left out
//! when nothing failed, so those replies keep their bytes.

use crate::control::server::Reply;
use crate::events::{Event, EventRecord, EventSink, ListenerGuard, ProcessEvent};
use crate::util::sync::Unpoisoned;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Collects hook failures from the moment it is made until [`attach`](Self::attach).
pub struct HookWarnings {
    collected: Arc<Mutex<Vec<String>>>,
    _listener: ListenerGuard,
}

impl HookWarnings {
    pub fn watch(events: &EventSink) -> HookWarnings {
        let collected = Arc::new(Mutex::new(Vec::new()));
        let listener = events.listen({
            let collected = collected.clone();
            Arc::new(move |event: &Event, record: &EventRecord| {
                if let Some(warning) = warning(event, record) {
                    collected.lock().unpoisoned().push(warning);
                }
            })
        });
        HookWarnings {
            collected,
            _listener: listener,
        }
    }

    /// Adds `"warnings": [...]` to a successful reply when a hook failed.
    pub fn attach(self, mut reply: Reply) -> Reply {
        let warnings = std::mem::take(&mut *self.collected.lock().unpoisoned());
        if let (Ok(payload), false) = (&mut reply.result, warnings.is_empty()) {
            payload.insert(
                "warnings".into(),
                Value::Array(warnings.into_iter().map(Value::from).collect()),
            );
        }
        reply
    }
}

/// `web of release v2: quiet command exited non-zero {"code":3,"id":"web"}`.
fn warning(event: &Event, record: &EventRecord) -> Option<String> {
    let Event::Process { scope, event } = event else {
        return None;
    };
    if !matches!(
        event,
        ProcessEvent::HookFailed { .. } | ProcessEvent::CommandHook { .. }
    ) {
        return None;
    }
    let mut data = record.data.clone();
    data.retain(|key, _| key != "processId" && key != "releaseId");
    let owner = if scope.release_id.is_empty() {
        scope.process_id.clone()
    } else {
        format!("{} of release {}", scope.process_id, scope.release_id)
    };
    Some(format!(
        "{owner}: {} {}",
        record.message,
        Value::Object(data)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CommandHookOutcome, ProcessScope};

    #[test]
    fn hook_failures_while_watching_become_warnings_and_nothing_else_does() {
        let sink = EventSink::silent();
        let warnings = HookWarnings::watch(&sink);
        sink.emit(Event::ReleaseStopped {
            release_id: "v1".into(),
        });
        sink.emit(Event::Process {
            scope: ProcessScope {
                process_id: "jobs".into(),
                release_id: "v2".into(),
            },
            event: ProcessEvent::CommandHook {
                hook: "quiet command",
                id: "jobs".into(),
                outcome: CommandHookOutcome::ExitedNonZero { code: 3 },
            },
        });
        let reply = warnings.attach(Reply::ok(serde_json::Map::new()));
        assert_eq!(
            reply.result.unwrap()["warnings"],
            serde_json::json!([
                "jobs of release v2: quiet command exited non-zero {\"code\":3,\"id\":\"jobs\"}"
            ])
        );
        let quiet = HookWarnings::watch(&sink).attach(Reply::ok(serde_json::Map::new()));
        assert!(quiet.result.unwrap().is_empty());
    }
}
