//! Shared harness for the daemon tests: start the real `rollbridge daemon` binary
//! on a JSON config in a temp dir, talk to its control socket with a tiny client,
//! make HTTP requests through its proxy, and clean up every process on drop.
#![allow(dead_code)]

pub use super::host::*;
pub use super::notify::NotifySocket;
pub use super::wait::*;
pub use super::ws::*;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `python3 <fixture>`, ready to use as a process `command`.
pub fn python(name: &str) -> String {
    format!("exec python3 {}", fixture(name))
}

/// Sends one request line and reads one reply line.
pub fn control_raw(socket: &Path, line: &str) -> std::io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(line.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| std::io::Error::other(format!("{e}: {reply:?}")))
}

pub fn control(socket: &Path, request: Value) -> Value {
    control_raw(socket, &request.to_string()).expect("control request")
}

/// A control request that must succeed.
pub fn ok(socket: &Path, request: Value) -> Value {
    let reply = control(socket, request.clone());
    assert_eq!(reply["status"], "success", "{request} -> {reply}");
    reply
}

/// A control request that must fail; returns the error text.
pub fn err(socket: &Path, request: Value) -> String {
    let reply = control(socket, request.clone());
    assert_eq!(reply["status"], "error", "{request} -> {reply}");
    reply["error"].as_str().unwrap().to_string()
}

/// A keep-alive HTTP/1.1 client on one connection (Content-Length bodies only).
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl KeepAlive {
    pub fn connect(port: u16) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            reader: BufReader::new(stream),
            port,
        })
    }

    /// One GET; `Err` when the connection failed or was closed.
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String, bool)> {
        let port = self.port;
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        self.send(request.as_bytes())?;
        self.response()
    }

    /// Writes bytes as they are (a request, or part of one).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// The connection's reader, for a response read by hand.
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }

    /// Reads one response: status, body (by `Content-Length`), and whether it
    /// said `Connection: close`; `Err` when the connection failed or was closed.
    pub fn response(&mut self) -> std::io::Result<(u16, String, bool)> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
    }
}

/// A test directory with a config file and a running daemon.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub proxy_port: u16,
    pub daemon: Option<DaemonProcess>,
    /// Process groups to kill on drop in case the daemon left any behind.
    pub extra_pids: Mutex<Vec<i32>>,
}

/// A base config: one proxied `web` app from the python fixture.
pub fn base_config(dir: &Path, proxy_port: u16) -> Value {
    json!({
        "application": "rollbridge-test",
        "control": {"path": dir.join("control.sock")},
        "proxy": {
            "host": "127.0.0.1",
            "port": proxy_port,
            "healthTimeoutMs": 10000,
            "drainTimeoutMs": 5000,
            "forceStopTimeoutMs": 3000
        },
        "processes": [
            {
                "id": "web",
                "policy": "proxied",
                "command": python("app.py"),
                "port": {"from": 0, "to": 0},
                "health": {"path": "/ping", "timeoutMs": 10000, "intervalMs": 50}
            }
        ]
    })
}

impl Harness {
    /// Writes `config` (with `control.path` and `proxy.port` filled in when absent)
    /// into a fresh temp dir. Does not start the daemon.
    pub fn new(build: impl FnOnce(&Path, u16) -> Value) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("rb-daemon-")
            .tempdir()
            .unwrap();
        let proxy_port = free_port();
        let config = build(dir.path(), proxy_port);
        let socket = PathBuf::from(config["control"]["path"].as_str().unwrap());
        let config_path = dir.path().join("rollbridge.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        Harness {
            dir,
            config_path,
            socket,
            proxy_port,
            daemon: None,
            extra_pids: Mutex::new(Vec::new()),
        }
    }

    /// A harness on the base config, with the daemon started.
    pub fn started() -> Harness {
        let mut harness = Harness::new(base_config);
        harness.start();
        harness
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes a release directory and returns its path as a string.
    pub fn release(&self, name: &str) -> String {
        let path = self.dir.path().join("releases").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn rewrite_config(&self, edit: impl FnOnce(&mut Value)) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        edit(&mut config);
        std::fs::write(
            &self.config_path,
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    /// Spawns `rollbridge daemon --config <path>` plus `extra` arguments.
    pub fn spawn(&self, extra: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn(&self.config_path, self.dir.path(), extra)
    }

    /// [`Harness::spawn`] with a last say on the command (environment, passed
    /// file descriptors, a wrapper).
    pub fn spawn_with(&self, extra: &[&str], edit: impl FnOnce(&mut Command)) -> DaemonProcess {
        let mut command = Command::new(BIN);
        command
            .arg("daemon")
            .arg("--config")
            .arg(&self.config_path)
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        edit(&mut command);
        let mut child = command.spawn().expect("spawn rollbridge daemon");
        let output = Output::collect(child.stdout.take().unwrap());
        let stderr = Output::collect(child.stderr.take().unwrap());
        DaemonProcess {
            child,
            output,
            stderr,
        }
    }

    /// Spawns the daemon the way systemd runs a `Type=notify` unit with a
    /// watchdog (`WATCHDOG_USEC` 0.3 s); its notifications go to the returned
    /// fake `NOTIFY_SOCKET`. Does not wait for readiness.
    pub fn spawn_under_systemd(&mut self) -> NotifySocket {
        let path = self.path("notify.sock");
        let notify = NotifySocket::bind(&path);
        let daemon = self.spawn_with(&[], |command| {
            command
                .env("NOTIFY_SOCKET", &path)
                .env("WATCHDOG_USEC", "300000");
        });
        self.daemon = Some(daemon);
        notify
    }

    /// Starts the daemon and waits for its readiness line.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Starts the daemon with extra environment variables and waits for its
    /// readiness line.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        let daemon = DaemonProcess::spawn_with_env(&self.config_path, self.dir.path(), &[], env);
        daemon.wait_ready(Duration::from_secs(30));
        self.daemon = Some(daemon);
    }

    /// Starts the daemon with `--log-file log` and `args`; ready once the file
    /// has the control socket's line (stdout stays empty with a log file).
    pub fn start_logging_to(&mut self, log: &Path, args: &[&str]) {
        let log_text = log.to_string_lossy().into_owned();
        let mut all = vec!["--log-file", log_text.as_str()];
        all.extend_from_slice(args);
        let daemon = self.spawn(&all);
        let ready = poll(Duration::from_secs(30), || {
            file_lines(log)
                .iter()
                .any(|l| l.contains("\"message\":\"control socket listening\""))
                .then_some(())
        });
        if ready.is_none() {
            panic!(
                "daemon did not become ready\nlog:\n{}\nstderr:\n{}",
                file_lines(log).join("\n"),
                daemon.stderr.lines().join("\n")
            );
        }
        self.daemon = Some(daemon);
    }

    pub fn output(&self) -> &Output {
        &self.daemon.as_ref().expect("daemon running").output
    }

    pub fn ok(&self, request: Value) -> Value {
        ok(&self.socket, request)
    }

    pub fn err(&self, request: Value) -> String {
        err(&self.socket, request)
    }

    pub fn status(&self) -> Value {
        self.ok(json!({"command": "status"}))
    }

    pub fn deploy(&self, release_id: &str) -> Value {
        let path = self.release(release_id);
        self.ok(json!({"command": "deploy", "releasePath": path, "releaseId": release_id}))
    }

    pub fn deploy_err(&self, release_id: &str) -> String {
        let path = self.release(release_id);
        self.err(json!({"command": "deploy", "releasePath": path, "releaseId": release_id}))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.proxy_port, path).expect("proxy request")
    }

    /// The release object with this id from a fresh `status`.
    pub fn release_status(&self, release_id: &str) -> Option<Value> {
        self.status()["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["releaseId"] == release_id)
            .cloned()
    }

    /// A process object from a release's status.
    pub fn process_in(&self, release_id: &str, process_id: &str) -> Option<Value> {
        self.release_status(release_id)?["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == process_id)
            .cloned()
    }

    /// Sends `shutdown` and waits for the daemon to exit; returns its exit code.
    pub fn shutdown(&mut self) -> i32 {
        let reply = self.ok(json!({"command": "shutdown"}));
        assert_eq!(reply["message"], "shutdown");
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for the daemon process to exit and returns its exit code (-signal
    /// when killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let daemon = self.daemon.as_mut().expect("daemon running");
        let status =
            poll(timeout, || daemon.child.try_wait().unwrap()).expect("daemon exited in time");
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0))
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.daemon.as_ref().expect("daemon running").pid();
        unsafe { libc::kill(pid, signal) };
    }

    /// Remembers every running managed process so the harness kills its group
    /// even when the daemon logs to a file (and `process started` is not on
    /// stdout).
    pub fn track_processes(&self) {
        let status = self.status();
        let mut pids = Vec::new();
        for release in status["releases"].as_array().unwrap() {
            for process in release["processes"].as_array().unwrap() {
                pids.extend(process["pid"].as_i64());
            }
        }
        for section in ["services", "singletons"] {
            for entry in status[section].as_array().unwrap() {
                pids.extend(entry["process"]["pid"].as_i64());
            }
        }
        self.extra_pids
            .lock()
            .unwrap()
            .extend(pids.into_iter().map(|pid| pid as i32));
    }

    /// Every pid the daemon reported starting (for leak checks).
    pub fn started_pids(&self) -> Vec<i32> {
        self.daemon
            .as_ref()
            .map(|d| d.output.started_pids())
            .unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let mut groups: Vec<i32> = self.extra_pids.lock().unwrap().clone();
        if let Some(daemon) = self.daemon.as_mut() {
            groups.extend(daemon.output.started_pids());
            if daemon.child.try_wait().ok().flatten().is_none() {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
            }
        }
        for pgid in groups {
            if pgid > 0 {
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
    }
}

/// A WebSocket client connected through the proxy.
/// The port of the daemon's metrics listener (config `metrics.port = 0`), from
/// its `metrics listening` event.
pub fn metrics_port(harness: &Harness) -> u16 {
    let event = poll(Duration::from_secs(30), || {
        harness
            .output()
            .events()
            .into_iter()
            .find(|e| e["message"] == "metrics listening")
    })
    .expect("a metrics listening event");
    event["data"]["port"].as_u64().unwrap() as u16
}

/// The pid of a process object from status.
pub fn pid_of(process: &Value) -> i32 {
    process["pid"].as_i64().expect("process has a pid") as i32
}

/// Event messages and data from the daemon's `events` command.
pub fn events_of(harness: &Harness) -> Vec<Value> {
    harness.ok(json!({"command": "events"}))["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// The lines of a file (a missing file reads as empty).
pub fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// For tests of hourly rotation: a run that crosses the top of the hour would
/// see one more rollover than it expects. Starting late in an hour waits for
/// the next one (at most 30 s, once in 120 runs on average).
pub fn clear_of_the_hour_boundary() {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    let into_hour = u64::from(now.minute() * 60 + now.second());
    if into_hour >= 3570 {
        std::thread::sleep(Duration::from_secs(3601 - into_hour));
    }
}
