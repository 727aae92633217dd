//! `status` for a person: a headline, what is going on (deploy, rollout,
//! pause, maintenance), the releases, then one table of every process (release
//! processes, services, singletons). It reads the typed [`Status`], the same
//! type the daemon writes.

use super::Paint;
use super::table::Table;
use crate::control::status::{ProcessStatus, ReleaseStatus, Status};
use serde_json::{Map, Value};

/// Renders a status reply.
pub fn render(reply: &Map<String, Value>, paint: Paint) -> String {
    render_status(&Status::from_reply(reply), paint)
}

/// Renders a status object.
pub fn render_status(status: &Status, paint: Paint) -> String {
    let mut out = vec![headline(status, paint)];
    out.extend(situation(status, paint));
    out.push(String::new());
    if status.releases.is_empty() {
        out.push("No releases yet: run \"rollbridge deploy --release-path DIR\".".to_string());
    } else {
        let mut table = Table::new(&["RELEASE", "STATE", "HTTP", "WS", "REVISION", "ACTIVATED"]);
        for release in &status.releases {
            table.row(vec![
                paint.bold(&release.release_id),
                paint.state(&release.state),
                release.connections.http.to_string(),
                release.connections.websocket.to_string(),
                release.revision.clone(),
                release.activated_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.extend(table.render(""));
    }
    let mut processes = Table::new(&[
        "PROCESS", "INSTANCE", "RELEASE", "PID", "STATE", "UPTIME", "RESTARTS", "RSS", "PORT",
    ]);
    // A stopped release's processes are all stopped: its row above says so.
    for release in status.releases.iter().filter(|r| r.state != "stopped") {
        for process in &release.processes {
            processes.row(process_row(
                process,
                &release.release_id,
                Some(release),
                paint,
            ));
        }
    }
    for (entries, label) in [
        (&status.services, "service"),
        (&status.singletons, "singleton"),
    ] {
        for entry in entries {
            match &entry.process {
                Some(process) => processes.row(process_row(process, label, None, paint)),
                None => processes.row(vec![
                    entry.id.clone(),
                    "-".into(),
                    label.into(),
                    "-".into(),
                    paint.dim("not running"),
                ]),
            }
        }
    }
    if !processes.is_empty() {
        out.push(String::new());
        out.extend(processes.render(""));
    }
    if !status.orphans.is_empty() {
        out.push(String::new());
        out.push(paint.yellow(&format!(
            "{} left by a previous daemon; see \"rollbridge recover\".",
            crate::cli::common::plural(
                status.orphans.len(),
                "orphaned process",
                "orphaned processes"
            )
        )));
    }
    out.join("\n")
}

fn headline(status: &Status, paint: Paint) -> String {
    let active = match &status.active_release_id {
        Some(id) => format!("active {}", paint.green(id)),
        None => paint.yellow("no active release"),
    };
    let proxy = status.proxy.as_ref().map_or(String::new(), |proxy| {
        format!("  proxy {}:{}", proxy.host, proxy.port)
    });
    format!("{}  {active}{proxy}", paint.bold(&status.application))
}

/// One line each for what is in progress or out of the ordinary.
fn situation(status: &Status, paint: Paint) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(deploying) = &status.deploying {
        lines.push(format!(
            "{}  {} from {} since {}",
            paint.bold("deploying:"),
            deploying.release_id,
            deploying.release_path,
            deploying.started_at
        ));
    }
    if let Some(rollout) = &status.rollout {
        let what = if rollout.phase == "canary" {
            format!(
                "canary {} gets {}% of new requests",
                rollout.release_id, rollout.percent
            )
        } else {
            format!(
                "watching {} since {}",
                rollout.release_id, rollout.started_at
            )
        };
        let p99 = rollout
            .p99_ms
            .map_or("-".to_string(), |ms| format!("{ms} ms"));
        lines.push(format!(
            "{}  {what}; {} requests, {} errors ({:.1}%), p99 {p99}{}",
            paint.bold("rollout:"),
            rollout.requests,
            rollout.errors,
            rollout.error_rate * 100.0,
            rollout
                .previous_release_id
                .as_ref()
                .map_or(String::new(), |previous| format!(
                    "; {previous} kept running"
                )),
        ));
    }
    if let Some(traffic) = &status.traffic {
        if traffic.maintenance {
            lines.push(format!(
                "{}  {}",
                paint.bold("traffic:"),
                paint.yellow("maintenance: every request gets 503")
            ));
        }
        if traffic.paused {
            lines.push(format!(
                "{}  {}",
                paint.bold("traffic:"),
                paint.yellow(&format!(
                    "paused, {} held; \"rollbridge resume\" lets them through",
                    traffic.held.unwrap_or(0)
                ))
            ));
        }
    }
    if let Some(failed) = &status.failed_release {
        lines.push(format!(
            "{}  {} (its output: \"rollbridge logs --release {}\")",
            paint.bold("failed deploy:"),
            failed.release_id,
            failed.release_id
        ));
    }
    lines
}

fn process_row(
    process: &ProcessStatus,
    release: &str,
    ports: Option<&ReleaseStatus>,
    paint: Paint,
) -> Vec<String> {
    let (base, instance) = match process.id.split_once('#') {
        Some((base, index)) => (base.to_string(), format!("#{index}")),
        None => (process.id.clone(), "-".to_string()),
    };
    let port = ports
        .and_then(|release| release.ports.iter().find(|(id, _)| *id == base))
        .map_or("-".to_string(), |(_, port)| port.to_string());
    vec![
        base,
        instance,
        release.to_string(),
        process.pid.map_or("-".to_string(), |pid| pid.to_string()),
        paint.state(&process.state),
        process.uptime_ms.map_or("-".to_string(), duration),
        process.restarts.to_string(),
        process.rss_bytes.map_or("-".to_string(), bytes),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_and_traffic_get_a_line_each_when_present() {
        let status = json!({"application": "shop", "activeReleaseId": "v2",
            "rollout": {"releaseId": "v3", "previousReleaseId": "v2", "phase": "canary",
                "percent": 10, "startedAt": "T", "requests": 200, "errors": 3,
                "errorRate": 0.015, "p99Ms": 40},
            "traffic": {"paused": true, "maintenance": false, "held": 4},
            "releases": [], "services": [], "singletons": []});
        let text = render(status.as_object().unwrap(), Paint::NONE);
        assert_eq!(
            text,
            "shop  active v2\n\
             rollout:  canary v3 gets 10% of new requests; 200 requests, 3 errors (1.5%), p99 40 ms; v2 kept running\n\
             traffic:  paused, 4 held; \"rollbridge resume\" lets them through\n\
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
