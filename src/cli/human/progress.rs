//! Live progress of deploy, rollback, restart and shutdown on stderr.
//!
//! A second control connection follows the daemon's events while the
//! command's own request runs on the first (deploy-class commands run one at a
//! time, so every event in between belongs to it). Each event becomes one step
//! line with the time since the command started; the command prints a one-line
//! summary when its reply arrives. Nothing of this reaches stdout, so the
//! reply's bytes stay what scripts read.

use super::Paint;
use crate::cli::follow::FollowStream;
use serde_json::{Map, Value};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `--progress`: force step lines even when stderr is not a terminal.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct ProgressArg {
    /// Print each step on stderr as it happens (the default when stderr is a terminal).
    #[arg(long)]
    pub progress: bool,
}

/// Step lines being printed for one command.
pub struct Progress {
    started: Instant,
    paint: Paint,
    follower: Option<(JoinHandle<()>, std::os::unix::net::UnixStream)>,
}

impl Progress {
    /// Starts following when stderr is a terminal or `--progress` was given;
    /// `None` otherwise, or when the daemon cannot stream (then the command
    /// runs as before, silently).
    pub fn start(socket: &Path, arg: &ProgressArg, color: super::ColorChoice) -> Option<Progress> {
        let on_terminal = std::io::stderr().is_terminal();
        if !on_terminal && !arg.progress {
            return None;
        }
        let paint = if on_terminal {
            Paint::for_terminal(color)
        } else {
            Paint::NONE
        };
        let request = serde_json::json!({"command": "events", "follow": true});
        let mut stream = FollowStream::open(socket, &request).ok()?;
        let closer = stream.closer().ok()?;
        let started = Instant::now();
        let follower = std::thread::spawn(move || {
            while let Ok(line) = stream.next_line() {
                let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(step) = step(&event) {
                    print_step(started, paint, &step);
                }
            }
        });
        Some(Progress {
            started,
            paint,
            follower: Some((follower, closer)),
        })
    }

    /// Lets the last steps arrive (the reply can overtake them on the other
    /// connection), stops following and prints `summary` with the total time.
    pub fn finish(mut self, summary: &str) {
        self.stop();
        let elapsed = format_elapsed(self.started.elapsed());
        eprintln!("{} {summary} ({elapsed})", self.paint.bold("==>"));
    }

    fn stop(&mut self) {
        if let Some((follower, closer)) = self.follower.take() {
            // Steps still in flight arrive within moments; a quiet pause means
            // the stream has caught up.
            let _ = closer.set_read_timeout(Some(Duration::from_millis(250)));
            let deadline = Instant::now() + Duration::from_secs(2);
            while !follower.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = closer.shutdown(std::net::Shutdown::Both);
            let _ = follower.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn print_step(started: Instant, paint: Paint, step: &str) {
    let elapsed = format!("{:>7}", format_elapsed(started.elapsed()));
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{} {step}", paint.dim(&elapsed));
    let _ = err.flush();
}

/// `0.4s`, `12.3s`, `2m05s`.
pub fn format_elapsed(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// The step line for one event, `None` for events that are not steps.
pub fn step(event: &Map<String, Value>) -> Option<String> {
    let message = event.get("message")?.as_str()?;
    let empty = Map::new();
    let data = event
        .get("data")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let get = |key: &str| match data.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let process = || {
        let release = get("releaseId");
        if release.is_empty() {
            get("processId")
        } else {
            format!("{} of {release}", get("processId"))
        }
    };
    Some(match message {
        "deploy starting" => format!(
            "release {} starting from {}",
            get("releaseId"),
            get("releasePath")
        ),
        "rollback starting" => format!("rolling back to {}", get("releaseId")),
        "process started" => format!(
            "{} started (pid {}, {})",
            process(),
            get("pid"),
            get("reason")
        ),
        "process exited" => {
            let how = match (get("code"), get("signal")) {
                (code, signal) if !signal.is_empty() && code.is_empty() => signal,
                (code, _) => format!("code {code}"),
            };
            format!("{} exited ({how})", process())
        }
        "health check waiting" => format!(
            "{} not healthy yet (attempt {}): {}",
            process(),
            get("attempt"),
            get("detail")
        ),
        "health check passed" => {
            format!("{} healthy after {} attempts", process(), get("attempts"))
        }
        "traffic switched" => match get("previousReleaseId").as_str() {
            "" => format!("traffic switched to {}", get("releaseId")),
            previous => format!("traffic switched to {} (from {previous})", get("releaseId")),
        },
        "release draining" => format!(
            "draining {}: {} HTTP / {} WebSocket connections",
            get("releaseId"),
            get("http"),
            get("websocket")
        ),
        "release drained" => format!("release {} drained and stopped", get("releaseId")),
        "release drain failed" => format!(
            "release {} drain failed: {}",
            get("releaseId"),
            get("error")
        ),
        "release stopped" => format!("release {} stopped", get("releaseId")),
        "deploy failed" => format!("deploy of {} failed: {}", get("releaseId"), get("error")),
        "release startup failed" => format!("release {} did not start", get("releaseId")),
        "process restart requested" => format!("restarting {}", get("processId")),
        "hook failed" => format!(
            "{}: {} hook {} failed: {}",
            process(),
            get("stage"),
            get("plugin"),
            get("reason")
        ),
        command_hook
            if [
                " exited non-zero",
                " exited on signal",
                " timed out",
                " failed",
            ]
            .iter()
            .any(|suffix| command_hook.ends_with(suffix))
                && command_hook.contains(" command ") =>
        {
            format!("{}: {command_hook}", process())
        }
        "process stop timed out" => format!("{} did not stop in time; killed", process()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step_of(event: Value) -> Option<String> {
        step(event.as_object().unwrap())
    }

    #[test]
    fn deploy_events_become_short_steps() {
        assert_eq!(
            step_of(
                json!({"message": "process started", "data": {"processId": "web",
                "releaseId": "v2", "pid": 42, "reason": "deploy"}})
            ),
            Some("web of v2 started (pid 42, deploy)".into())
        );
        assert_eq!(
            step_of(
                json!({"message": "traffic switched", "data": {"previousReleaseId": "v1", "releaseId": "v2"}})
            ),
            Some("traffic switched to v2 (from v1)".into())
        );
        assert_eq!(
            step_of(
                json!({"message": "process exited", "data": {"processId": "web",
                "releaseId": "v1", "code": null, "signal": "SIGTERM"}})
            ),
            Some("web of v1 exited (SIGTERM)".into())
        );
        assert_eq!(
            step_of(json!({"message": "command failed", "data": {}})),
            None
        );
        assert_eq!(format_elapsed(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_elapsed(Duration::from_secs(125)), "2m05s");
    }
}
