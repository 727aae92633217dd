//! What every black-box suite needs, whichever harness it builds on: the
//! binary, free ports, independent `/proc` liveness checks, a plain HTTP client,
//! process-group guards, and spawning the real daemon with its output collected.
#![allow(dead_code)]

use super::wait::poll;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollbridge");

/// The daemon's readiness line (its `control socket listening` event).
pub const READY_EVENT: &str = "control socket listening";

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The state letter and process group from `/proc/<pid>/stat`.
fn stat_of(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the state is
    // the first field after the closing parenthesis, the group the third.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(2)?.parse().ok()?))
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && stat_of(pid).is_some_and(|(state, _)| state != "Z" && state != "X")
}

/// Whether any non-zombie process is in process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(stat_of)
            .is_some_and(|(state, group)| group == pgid && state != "Z" && state != "X")
    })
}

/// A simple HTTP/1.1 GET on a fresh connection: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with_headers(port, path, &[])
}

/// [`http_get`] with extra request headers.
pub fn http_get_with_headers(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A process the test started in its own process group; the whole group is
/// killed (and the leader reaped) on drop.
pub struct GroupGuard {
    pub child: Child,
}

impl GroupGuard {
    /// Starts `sh -c <script>` as the leader of a new process group, like a
    /// managed process.
    pub fn spawn_shell(script: &str) -> GroupGuard {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        GroupGuard { child }
    }

    /// Starts `sleep <args>` directly as a group leader.
    pub fn spawn_sleep(args: &[&str]) -> GroupGuard {
        let child = Command::new("sleep")
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        GroupGuard { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// True while the leader runs (a zombie counts as gone; it is reaped here).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Lines a process printed on one stream, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Output {
    /// Starts a thread that appends every line of `stream`.
    pub fn collect(stream: impl Read + Send + 'static) -> Output {
        let output = Output::default();
        let lines = output.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("ROLLBRIDGE_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
        output
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Parsed event lines (`{"at","data","message"}`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value.get("message").is_some())
            .collect()
    }

    pub fn has_event(&self, message: &str) -> bool {
        self.events().iter().any(|e| e["message"] == message)
    }

    /// Every pid reported by a `process started` event.
    pub fn started_pids(&self) -> Vec<i32> {
        self.events()
            .iter()
            .filter(|e| e["message"] == "process started")
            .filter_map(|e| e["data"]["pid"].as_i64().map(|p| p as i32))
            .collect()
    }
}

/// A `rollbridge daemon` process with its stdout and stderr collected.
pub struct DaemonProcess {
    pub child: Child,
    pub output: Output,
    pub stderr: Output,
}

impl DaemonProcess {
    /// Spawns `rollbridge daemon --config <config> <extra…>` in `cwd`.
    pub fn spawn(config: &Path, cwd: &Path, extra: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn_with_env(config, cwd, extra, &[])
    }

    /// [`DaemonProcess::spawn`] with extra environment variables for the daemon.
    pub fn spawn_with_env(
        config: &Path,
        cwd: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> DaemonProcess {
        let mut child = Command::new(BIN)
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .args(extra)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rollbridge daemon");
        let output = Output::collect(child.stdout.take().unwrap());
        let stderr = Output::collect(child.stderr.take().unwrap());
        DaemonProcess {
            child,
            output,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the readiness line; panics with everything the daemon printed
    /// when it does not come within `limit`.
    pub fn wait_ready(&self, limit: Duration) {
        if poll(limit, || self.output.has_event(READY_EVENT).then_some(())).is_none() {
            panic!(
                "daemon did not become ready\nstdout:\n{}\nstderr:\n{}",
                self.output.lines().join("\n"),
                self.stderr.lines().join("\n")
            );
        }
    }
}
