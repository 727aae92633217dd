//! `status` for a person: a headline, the releases, then one table of every
//! process (release processes, services, singletons).

use super::Paint;
use super::table::Table;
use serde_json::{Map, Value};

/// Renders a status reply. Keys this renderer does not know are left out;
/// `rollout`, `traffic`, `paused` and `maintenance` are shown when present.
pub fn render(status: &Map<String, Value>, paint: Paint) -> String {
    let mut out = vec![headline(status, paint)];
    for key in ["rollout", "traffic", "paused", "maintenance", "deploying"] {
        if let Some(value) = status.get(key).filter(|value| !value.is_null()) {
            out.push(format!(
                "{}  {}",
                paint.bold(&format!("{key}:")),
                summary(value)
            ));
        }
    }
    let releases = array(status, "releases");
    out.push(String::new());
    if releases.is_empty() {
        out.push("No releases yet: run \"rollbridge deploy --release-path DIR\".".to_string());
    } else {
        let mut table = Table::new(&["RELEASE", "STATE", "HTTP", "WS", "REVISION", "ACTIVATED"]);
        for release in releases {
            let connections = release.get("connections");
            let count = |kind: &str| {
                connections
                    .and_then(|c| c.get(kind))
                    .map_or("-".to_string(), plain)
            };
            table.row(vec![
                paint.bold(&text(release, "releaseId")),
                paint.state(&text(release, "state")),
                count("http"),
                count("websocket"),
                text(release, "revision"),
                text(release, "activatedAt"),
            ]);
        }
        out.extend(table.render(""));
    }
    let mut processes = Table::new(&[
        "PROCESS", "INSTANCE", "RELEASE", "PID", "STATE", "UPTIME", "RESTARTS", "RSS", "PORT",
    ]);
    // A stopped release's processes are all stopped: its row above says so.
    for release in releases.iter().filter(|r| text(r, "state") != "stopped") {
        let label = text(release, "releaseId");
        for process in release
            .get("processes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            processes.row(process_row(process, &label, release.get("ports"), paint));
        }
    }
    for (key, label) in [("services", "service"), ("singletons", "singleton")] {
        for entry in array(status, key) {
            if let Some(process) = entry.get("process") {
                processes.row(process_row(process, label, None, paint));
            } else {
                let id = text(entry, "id");
                processes.row(vec![
                    id,
                    "-".into(),
                    label.into(),
                    "-".into(),
                    paint.dim("not running"),
                ]);
            }
        }
    }
    if !processes.is_empty() {
        out.push(String::new());
        out.extend(processes.render(""));
    }
    let orphans = array(status, "orphans");
    if !orphans.is_empty() {
        out.push(String::new());
        out.push(paint.yellow(&format!(
            "{} left by a previous daemon; see \"rollbridge recover\".",
            crate::cli::common::plural(orphans.len(), "orphaned process", "orphaned processes")
        )));
    }
    out.join("\n")
}

fn headline(status: &Map<String, Value>, paint: Paint) -> String {
    let application = status.get("application").map_or(String::new(), plain);
    let active = match status.get("activeReleaseId") {
        Some(Value::String(id)) => format!("active {}", paint.green(id)),
        _ => paint.yellow("no active release"),
    };
    let proxy = status.get("proxy").map_or(String::new(), |proxy| {
        format!(
            "  proxy {}:{}",
            proxy.get("host").map_or(String::new(), plain),
            proxy.get("port").map_or(String::new(), plain)
        )
    });
    format!("{}  {active}{proxy}", paint.bold(&application))
}

fn process_row(process: &Value, release: &str, ports: Option<&Value>, paint: Paint) -> Vec<String> {
    let id = text(process, "id");
    let (base, instance) = match id.split_once('#') {
        Some((base, index)) => (base.to_string(), format!("#{index}")),
        None => (id.clone(), "-".to_string()),
    };
    let port = ports
        .and_then(|ports| ports.get(&base))
        .map_or("-".to_string(), plain);
    vec![
        base,
        instance,
        release.to_string(),
        process
            .get("pid")
            .filter(|pid| !pid.is_null())
            .map_or("-".to_string(), plain),
        paint.state(&text(process, "state")),
        process
            .get("uptimeMs")
            .and_then(Value::as_u64)
            .map_or("-".to_string(), duration),
        process.get("restarts").map_or("0".to_string(), plain),
        process
            .get("rssBytes")
            .and_then(Value::as_u64)
            .map_or("-".to_string(), bytes),
        port,
    ]
}

/// `3s`, `4m05s`, `2h07m`, `3d04h`.
pub fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

/// `512 B`, `12.3 KiB`, `21.4 MiB`, `1.2 GiB`.
pub fn bytes(count: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A value in one short line: strings bare, objects as `key=value` pairs.
fn summary(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", plain(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => plain(other),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).map_or("-".to_string(), plain)
}

fn array<'s>(status: &'s Map<String, Value>, key: &str) -> &'s [Value] {
    status
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_pause_and_maintenance_keys_get_a_line_each_when_present() {
        let status = json!({"application": "shop", "activeReleaseId": null,
            "rollout": {"releaseId": "v3", "weight": 10}, "paused": true, "maintenance": null,
            "releases": [], "services": [], "singletons": []});
        let text = render(status.as_object().unwrap(), Paint::NONE);
        assert_eq!(
            text,
            "shop  no active release\n\
             rollout:  releaseId=v3 weight=10\n\
             paused:  true\n\
             \n\
             No releases yet: run \"rollbridge deploy --release-path DIR\"."
        );
    }

    #[test]
    fn durations_and_sizes_are_short() {
        assert_eq!(duration(3_400), "3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_620_000), "2h07m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(22_440_000), "21.4 MiB");
    }

    #[test]
    fn a_status_is_a_headline_a_release_table_and_a_process_table() {
        let status = json!({
            "status": "success", "activeReleaseId": "v2", "application": "shop",
            "proxy": {"host": "127.0.0.1", "port": 4000},
            "releases": [{"releaseId": "v2", "state": "active", "revision": "abc",
                "activatedAt": "2026-12-06T01:00:00.000Z",
                "connections": {"http": 3, "websocket": 1}, "ports": {"web": 18001},
                "processes": [{"id": "web", "pid": 10, "state": "running", "uptimeMs": 61000,
                    "restarts": 2, "rssBytes": 1048576}]}],
            "services": [{"id": "beacon", "process": {"id": "beacon", "pid": 11, "state": "running",
                "uptimeMs": 1000, "restarts": 0}}],
            "singletons": [],
            "orphans": []
        });
        let text = render(status.as_object().unwrap(), Paint::NONE);
        assert_eq!(
            text,
            "shop  active v2  proxy 127.0.0.1:4000\n\
             \n\
             RELEASE  STATE   HTTP  WS  REVISION  ACTIVATED\n\
             v2       active  3     1   abc       2026-12-06T01:00:00.000Z\n\
             \n\
             PROCESS  INSTANCE  RELEASE  PID  STATE    UPTIME  RESTARTS  RSS      PORT\n\
             web      -         v2       10   running  1m01s   2         1.0 MiB  18001\n\
             beacon   -         service  11   running  1s      0         -        -"
        );
    }
}
