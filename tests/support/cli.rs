//! Shared helpers for the CLI tests: running the real binary, temp configs, a fake
//! daemon on a real Unix socket, and guards that kill what a test spawned.
#![allow(dead_code)]

// Each test file uses its own subset.
#[allow(unused_imports)]
pub use super::host::{
    BIN, DaemonProcess, GroupGuard, free_port, group_alive, http_get, pid_alive,
};
#[allow(unused_imports)]
pub use super::wait::{PATIENCE, poll, wait_until};

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The result of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `rollbridge <args>` in `cwd` and waits for it.
pub fn rollbridge_in(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run rollbridge");
    Run::from(output)
}

/// A temp directory holding a JSON config whose control socket lives inside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub application: String,
}

impl Sandbox {
    pub fn new(application: &str) -> Sandbox {
        Sandbox::with(application, |_| {})
    }

    /// A sandbox whose config is the default one, edited by `edit`.
    pub fn with(application: &str, edit: impl FnOnce(&mut Value)) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("rb-cli-")
            .tempdir()
            .expect("temp dir");
        let sandbox = Sandbox {
            dir,
            application: application.to_string(),
        };
        let mut config = json!({
            "application": application,
            "control": {"path": sandbox.socket().to_str().unwrap()},
            "proxy": {"host": "127.0.0.1", "port": 0, "forceStopTimeoutMs": 2000},
            "processes": [{
                "id": "web",
                "policy": "proxied",
                "command": "python3 app.py",
                "port": {"from": 0, "to": 0}
            }]
        });
        edit(&mut config);
        sandbox.write_config(&config);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("rollbridge.json")
    }

    pub fn write_config(&self, config: &Value) {
        std::fs::write(
            self.config_path(),
            serde_json::to_string_pretty(config).unwrap(),
        )
        .unwrap();
    }

    /// Runs `rollbridge <command> --config <this config> <rest>` from the sandbox.
    pub fn run(&self, command: &str, rest: &[&str]) -> Run {
        let config = self.config_path();
        let mut args = vec![command, "--config", config.to_str().unwrap()];
        args.extend_from_slice(rest);
        rollbridge_in(self.path(), &args)
    }
}

/// How the fake daemon answers one request line: `Some(line)` is written back
/// (a `\n` is added), `None` leaves the connection silent.
pub type Responder = dyn Fn(&Value) -> Option<String> + Send + Sync;

/// A stand-in daemon on a real Unix socket that records every request.
pub struct FakeDaemon {
    pub path: PathBuf,
    requests: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    pub fn start(
        path: &Path,
        responder: impl Fn(&Value) -> Option<String> + Send + Sync + 'static,
    ) -> FakeDaemon {
        let listener = UnixListener::bind(path).expect("bind fake daemon");
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let responder: Arc<Responder> = Arc::new(responder);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            let socket_path = path.to_path_buf();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            let (requests, responder) = (requests.clone(), responder.clone());
                            let (stop, path) = (stop.clone(), socket_path.clone());
                            std::thread::spawn(move || {
                                let mut line = String::new();
                                let mut reader = BufReader::new(stream.try_clone().unwrap());
                                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                let request: Value =
                                    serde_json::from_str(line.trim_end()).unwrap_or(Value::Null);
                                requests.lock().unwrap().push(request.clone());
                                if let Some(reply) = responder(&request) {
                                    let mut stream = stream;
                                    let _ = stream.write_all(format!("{reply}\n").as_bytes());
                                    // Like a daemon: a successful shutdown releases the socket.
                                    if request["command"] == "shutdown"
                                        && reply.contains("\"success\"")
                                    {
                                        stop.store(true, Ordering::SeqCst);
                                        let _ = std::fs::remove_file(&path);
                                        return;
                                    }
                                }
                                // Keep the connection until the client hangs up.
                                let mut rest = String::new();
                                let _ = reader.read_line(&mut rest);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeDaemon {
            path: path.to_path_buf(),
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The `command` of every request received so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                r.get("command")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A success reply: `{"status":"success", ...payload}`.
pub fn success(payload: Value) -> String {
    let mut reply = serde_json::Map::new();
    reply.insert("status".into(), json!("success"));
    if let Value::Object(payload) = payload {
        reply.extend(payload);
    }
    Value::Object(reply).to_string()
}

/// An error reply in the daemon's key order.
pub fn failure(message: &str) -> String {
    json!({"error": message, "status": "error"}).to_string()
}

/// SHA-256 of the rollbridge binary under test: the runtime digest a compatible
/// daemon reports.
pub fn binary_digest() -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(BIN).unwrap()))
}

/// A `daemonRuntime` object matching the binary under test.
pub fn matching_runtime() -> Value {
    json!({
        "digest": binary_digest(),
        "format": 1,
        "path": Path::new(BIN).parent().unwrap().to_str().unwrap(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// A fake daemon in its own process (python3): answers `status` with `status`
/// (a full reply line), `shutdown` with success and then exits. Every request
/// line is appended to `log`.
pub fn external_fake_daemon(socket: &Path, status: &Value, log: &Path) -> GroupGuard {
    const SCRIPT: &str = r#"
import os, socket, sys
path, reply, log = sys.argv[1], sys.argv[2], sys.argv[3]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)
while True:
    conn, _ = server.accept()
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    line = data.decode().strip()
    if not line:
        conn.close()
        continue
    with open(log, "a") as f:
        f.write(line + "\n")
    if '"shutdown"' in line:
        conn.sendall(b'{"status":"success","message":"shutdown"}\n')
        conn.close()
        os.unlink(path)
        sys.exit(0)
    try:
        conn.sendall(reply.encode() + b"\n")
    except OSError:
        pass
    conn.close()
"#;
    let child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(socket)
        .arg(status.to_string())
        .arg(log)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let guard = GroupGuard { child };
    wait_until(Duration::from_secs(10), "the fake daemon to listen", || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
    guard
}

/// The release app every end-to-end config runs.
pub fn fixture_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app.py")
}

/// A config for a real daemon: proxied `web` (the fixture app) and a `worker`
/// companion, proxy on `port`, state file inside the sandbox.
pub fn daemon_sandbox(application: &str, port: u16) -> Sandbox {
    let app = fixture_app();
    Sandbox::with(application, move |config| {
        config["proxy"] = json!({
            "host": "127.0.0.1",
            "port": port,
            "healthTimeoutMs": 15000,
            "drainTimeoutMs": 2000,
            "forceStopTimeoutMs": 3000
        });
        config["processes"] = json!([
            {"id": "web", "policy": "proxied", "command": format!("exec python3 {}", app.display()),
             "port": {"from": 0, "to": 0}, "health": {"path": "/ping", "intervalMs": 50}},
            {"id": "worker", "command": "exec sleep 300"}
        ]);
    })
}

/// Kills every process whose command line mentions `marker` (a sandbox path), so
/// nothing a test's daemon started can outlive the test.
pub fn kill_processes_mentioning(marker: &str) {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            unsafe {
                libc::kill(pid.parse().unwrap(), libc::SIGKILL);
            }
        }
    }
}

/// A daemon process the test owns: stopped with SIGTERM (then SIGKILL) on drop,
/// and every process mentioning its sandbox is killed afterwards.
pub struct DaemonGuard {
    pub pid: i32,
    process: Option<DaemonProcess>,
    marker: String,
}

impl DaemonGuard {
    /// Runs `rollbridge daemon --config <sandbox config>` and waits for its
    /// `control socket listening` line.
    pub fn start(sandbox: &Sandbox) -> DaemonGuard {
        DaemonGuard::start_with(sandbox, &sandbox.config_path())
    }

    /// [`DaemonGuard::start`] with another config file of the sandbox (a Lua one).
    pub fn start_with(sandbox: &Sandbox, config: &Path) -> DaemonGuard {
        let process = DaemonProcess::spawn(config, sandbox.path(), &[]);
        let guard = DaemonGuard {
            pid: process.pid(),
            process: Some(process),
            marker: sandbox.path().to_string_lossy().into_owned(),
        };
        if let Some(process) = &guard.process {
            process.wait_ready(Duration::from_secs(30));
        }
        guard
    }

    /// Adopts a daemon started elsewhere (by `ensure-daemon`), known by its pid.
    pub fn adopt(pid: i32, sandbox: &Sandbox) -> DaemonGuard {
        DaemonGuard {
            pid,
            process: None,
            marker: sandbox.path().to_string_lossy().into_owned(),
        }
    }

    /// True while the daemon process exists and is not a zombie.
    pub fn running(&mut self) -> bool {
        match &mut self.process {
            Some(process) => matches!(process.child.try_wait(), Ok(None)),
            None => pid_alive(self.pid),
        }
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if self.running() {
            unsafe {
                libc::kill(self.pid, libc::SIGTERM);
            }
            if poll(Duration::from_secs(15), || (!self.running()).then_some(())).is_none() {
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                }
            }
        }
        if let Some(process) = &mut self.process {
            let _ = process.child.wait();
        }
        kill_processes_mentioning(&self.marker);
    }
}

/// Parses a command's stdout as JSON.
pub fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}
