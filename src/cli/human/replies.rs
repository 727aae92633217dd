//! Short sentences for the replies of deploy, rollback, restart, stop and
//! shutdown, with the reply's `warnings` after them.

use super::Paint;
use serde_json::{Map, Value};

pub use crate::cli::common::plural as count;

/// `deploy`: which release serves now and what it replaced (or, for
/// `--canary`, the canary's share).
pub fn deployed(reply: &Map<String, Value>, paint: Paint) -> String {
    if reply.contains_key("canaryReleaseId") {
        return canary(reply, paint);
    }
    switched(
        reply,
        paint,
        "Deployed {}",
        |previous| {
            format!(": traffic switched from {previous}, which drains and stops in the background.")
        },
        ": it serves the proxy port now.",
    )
}

/// `rollback`: the release re-activated.
pub fn rolled_back(reply: &Map<String, Value>, paint: Paint) -> String {
    switched(
        reply,
        paint,
        "Rolled back to {}",
        |previous| format!(": traffic switched from {previous}."),
        ".",
    )
}

/// `✓ <head with the active release><tail>`: the tail names the previous
/// release when there was one.
fn switched(
    reply: &Map<String, Value>,
    paint: Paint,
    head: &str,
    from_previous: impl FnOnce(&str) -> String,
    first: &str,
) -> String {
    let active = paint.bold(&id(reply.get("activeReleaseId")));
    let tail = match reply.get("previousReleaseId").and_then(Value::as_str) {
        Some(previous) => from_previous(previous),
        None => first.to_string(),
    };
    let sentence = format!("{} {}{tail}", paint.green("✓"), head.replace("{}", &active));
    with_warnings(sentence, reply, paint)
}

/// `deploy --canary` and `rollout set`: the canary's share of new requests.
fn canary(reply: &Map<String, Value>, paint: Paint) -> String {
    let percent = reply.get("percent").and_then(Value::as_u64).unwrap_or(0);
    let sentence = format!(
        "{} Canary {} gets {percent}% of new requests; {} serves the rest. Next: \"rollbridge rollout promote\" or \"rollbridge rollout abort\".",
        paint.green("✓"),
        paint.bold(&id(reply.get("canaryReleaseId"))),
        paint.bold(&id(reply.get("activeReleaseId"))),
    );
    with_warnings(sentence, reply, paint)
}

/// `rollout set|promote|abort`.
pub fn rollout(reply: &Map<String, Value>, paint: Paint) -> String {
    if reply.contains_key("canaryReleaseId") {
        canary(reply, paint)
    } else if let Some(aborted) = reply.get("abortedReleaseId") {
        let sentence = format!(
            "{} Canary {} aborted: {} serves every request; the canary drains and stops.",
            paint.green("✓"),
            paint.bold(&id(Some(aborted))),
            paint.bold(&id(reply.get("activeReleaseId"))),
        );
        with_warnings(sentence, reply, paint)
    } else {
        switched(
            reply,
            paint,
            "Promoted {}",
            |previous| format!(": traffic switched from {previous}, which drains and stops."),
            ".",
        )
    }
}

/// `upgrade`: the versions before and after (the app kept running).
pub fn upgraded(reply: &Map<String, Value>, paint: Paint) -> String {
    let text = |key: &str| reply.get(key).and_then(Value::as_str).unwrap_or("-");
    let digest: String = text("digest").chars().take(12).collect();
    format!(
        "{} Upgraded the daemon in place: rollbridge {} -> {} (sha256 {}); every process kept running.",
        paint.green("✓"),
        text("previousVersion"),
        paint.bold(text("version")),
        digest,
    )
}

/// `pause`, `resume` and `maintenance`: the traffic state now.
pub fn traffic(reply: &Map<String, Value>, paint: Paint) -> String {
    let number = |key: &str| reply.get(key).and_then(Value::as_u64).unwrap_or(0);
    match (reply.get("paused"), reply.get("maintenance")) {
        (Some(Value::Bool(true)), _) => format!(
            "{} Paused: new requests are held (each at most {} ms, then 503) until \"rollbridge resume\".",
            paint.yellow("⏸"),
            number("maxMs")
        ),
        (Some(_), _) => format!(
            "{} Resumed: {} let through in arrival order.",
            paint.green("✓"),
            count(number("held") as usize, "held request", "held requests")
        ),
        (_, Some(Value::Bool(true))) => format!(
            "{} Maintenance on: every request gets 503 with \"{}\".",
            paint.yellow("!"),
            reply.get("message").and_then(Value::as_str).unwrap_or("")
        ),
        _ => format!(
            "{} Maintenance off: requests are routed again.",
            paint.green("✓")
        ),
    }
}

/// `restart`: the instances restarted.
pub fn restarted(reply: &Map<String, Value>, paint: Paint) -> String {
    let ids: Vec<&str> = reply
        .get("restarted")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sentence = if ids.is_empty() {
        "Nothing matched; no process was restarted.".to_string()
    } else {
        format!(
            "{} Restarted {}: {}.",
            paint.green("✓"),
            count(ids.len(), "process", "processes"),
            ids.join(", ")
        )
    };
    with_warnings(sentence, reply, paint)
}

/// `stop`: the release stopped, then the status after it.
pub fn stopped(reply: &Map<String, Value>, release: Option<&str>, paint: Paint) -> String {
    let what = match release {
        Some(id) => format!("release {}", paint.bold(id)),
        None => "the active release".to_string(),
    };
    let sentence = format!(
        "{} Stopped {what}; without an active release the proxy answers 503 until the next deploy or rollback.",
        paint.green("✓")
    );
    let text = with_warnings(sentence, reply, paint);
    format!("{text}\n\n{}", super::status::render(reply, paint))
}

/// `shutdown`: the daemon is gone.
pub fn shut_down(reply: &Map<String, Value>, paint: Paint) -> String {
    with_warnings(
        format!(
            "{} The daemon stopped every managed process and exited.",
            paint.green("✓")
        ),
        reply,
        paint,
    )
}

/// `sentence`, then one `warning:` line per entry of the reply's `warnings`.
pub fn with_warnings(sentence: String, reply: &Map<String, Value>, paint: Paint) -> String {
    let mut lines = vec![sentence];
    for warning in reply
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = match warning {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        lines.push(format!("{} {text}", paint.yellow("warning:")));
    }
    lines.join("\n")
}

fn id(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(id)) => id.clone(),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn deploy_sentences_name_both_releases_and_every_warning() {
        let reply = map(json!({"status": "success", "activeReleaseId": "v2",
            "previousReleaseId": "v1", "warnings": ["hook failed: web quiet exited 3"]}));
        assert_eq!(
            deployed(&reply, Paint::NONE),
            "✓ Deployed v2: traffic switched from v1, which drains and stops in the background.\n\
             warning: hook failed: web quiet exited 3"
        );
        let first = map(json!({"activeReleaseId": "v1", "previousReleaseId": null}));
        assert_eq!(
            deployed(&first, Paint::NONE),
            "✓ Deployed v1: it serves the proxy port now."
        );
    }

    #[test]
    fn canary_rollout_traffic_and_upgrade_sentences() {
        let canary = map(json!({"activeReleaseId": "v1", "canaryReleaseId": "v2", "percent": 20}));
        assert_eq!(
            deployed(&canary, Paint::NONE),
            "✓ Canary v2 gets 20% of new requests; v1 serves the rest. Next: \"rollbridge rollout promote\" or \"rollbridge rollout abort\"."
        );
        let aborted = map(json!({"activeReleaseId": "v1", "abortedReleaseId": "v2"}));
        assert_eq!(
            rollout(&aborted, Paint::NONE),
            "✓ Canary v2 aborted: v1 serves every request; the canary drains and stops."
        );
        let promoted = map(json!({"activeReleaseId": "v2", "previousReleaseId": "v1"}));
        assert_eq!(
            rollout(&promoted, Paint::NONE),
            "✓ Promoted v2: traffic switched from v1, which drains and stops."
        );
        assert_eq!(
            traffic(&map(json!({"paused": false, "held": 1})), Paint::NONE),
            "✓ Resumed: 1 held request let through in arrival order."
        );
        assert_eq!(
            traffic(
                &map(json!({"maintenance": true, "message": "Back at 3"})),
                Paint::NONE
            ),
            "! Maintenance on: every request gets 503 with \"Back at 3\"."
        );
        let upgrade = map(json!({"previousVersion": "0.2.0", "version": "0.3.0",
            "digest": "0123456789abcdef0123"}));
        assert_eq!(
            upgraded(&upgrade, Paint::NONE),
            "✓ Upgraded the daemon in place: rollbridge 0.2.0 -> 0.3.0 (sha256 0123456789ab); every process kept running."
        );
    }

    #[test]
    fn restart_lists_what_it_restarted() {
        let reply = map(json!({"restarted": ["worker#0", "worker#1"]}));
        assert_eq!(
            restarted(&reply, Paint::NONE),
            "✓ Restarted 2 processes: worker#0, worker#1."
        );
        assert_eq!(
            restarted(&map(json!({"restarted": []})), Paint::NONE),
            "Nothing matched; no process was restarted."
        );
    }
}
