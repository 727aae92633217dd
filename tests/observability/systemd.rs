//! systemd integration with real sockets: a fake `NOTIFY_SOCKET` the test binds,
//! and listeners passed the way systemd passes them (`LISTEN_FDS` from fd 3).

use crate::support::daemon::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment a managed process was started with.
fn environment_of(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// The `socket:[inode]` links of a process's open descriptors.
fn socket_links(pid: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .map(|link| link.to_string_lossy().into_owned())
                .filter(|link| link.starts_with("socket:"))
                .collect()
        })
        .unwrap_or_default()
}

fn web_pid(harness: &Harness, release: &str) -> i32 {
    pid_of(&harness.process_in(release, "web").unwrap())
}

#[test]
fn notify_socket_gets_ready_status_reloading_watchdog_and_stopping() {
    let mut harness = Harness::new(base_config);
    let notify = harness.spawn_under_systemd();

    let ready = notify.wait_for("READY=1", 0);
    assert_eq!(
        notify.received()[ready],
        "READY=1\nSTATUS=no active release\n"
    );
    // Ready means serving: the proxy answers (no release yet) and so does control.
    assert_eq!(harness.get("/"), (503, "No active release\n".to_string()));
    assert_eq!(harness.status()["activeReleaseId"], Value::Null);
    assert!(
        notify.received()[..ready]
            .iter()
            .all(|m| !m.contains("READY=1")),
        "READY=1 only once serving"
    );
    notify.wait_for("WATCHDOG=1", 0);

    harness.deploy("v1");
    let reloading = notify.wait_for("RELOADING=1", 0);
    assert!(
        notify.received()[reloading].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{}",
        notify.received()[reloading]
    );
    let status = notify.wait_for("STATUS=active release v1", 0);
    let reloaded = notify.received()[reloading..]
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .map(|i| i + reloading)
        .expect("READY=1 after the reload");
    assert!(reloaded < status, "{:?}", notify.received());

    // Managed processes inherit none of systemd's variables.
    let environment = environment_of(web_pid(&harness, "v1"));
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID"] {
        assert!(
            !environment
                .iter()
                .any(|e| e.starts_with(&format!("{name}="))),
            "{name} leaked into the managed process"
        );
    }

    let before_stop = notify.received().len();
    assert_eq!(harness.shutdown(), 0);
    let stopping = notify.wait_for("STOPPING=1", 0);
    assert!(stopping >= before_stop);
    assert_eq!(notify.received()[stopping], "STOPPING=1\nSTATUS=stopping\n");
}

/// Spawns the daemon with `passed` as fds 3.. and the systemd variables set, the
/// way systemd's socket activation starts a service.
fn spawn_activated(harness: &Harness, passed: &[i32], names: &str, log: &Path) -> DaemonProcess {
    let passed = passed.to_vec();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        // LISTEN_PID must be the daemon's own pid: exec keeps the shell's.
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("daemon")
        .arg("--config")
        .arg(&harness.config_path)
        .arg("--log-file")
        .arg(log)
        .env("LISTEN_FDS", passed.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .current_dir(harness.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only dup/dup2/fcntl between fork and exec (async-signal-safe).
    unsafe {
        command.pre_exec(move || {
            // Move the sources out of the way first so 3.. can be filled freely;
            // the copies close at exec, only 3.. (dup2 clears close-on-exec) pass.
            let mut high = Vec::new();
            for fd in &passed {
                let copy = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if copy < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(copy);
            }
            for (index, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + index as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let output = Output::collect(child.stdout.take().unwrap());
    let stderr = Output::collect(child.stderr.take().unwrap());
    DaemonProcess {
        child,
        output,
        stderr,
    }
}

fn log_has(log: &Path, message: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(&format!("\"message\":\"{message}\""))
}

#[test]
fn passed_listeners_are_served_and_queued_clients_get_answers() {
    let mut harness = Harness::new(base_config);
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    assert_ne!(port, harness.proxy_port);
    let control = UnixListener::bind(&harness.socket).unwrap();

    // A client that connects before the daemon runs waits in the backlog.
    let mut early = TcpStream::connect(("127.0.0.1", port)).unwrap();
    early
        .write_all(b"GET /release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();

    let log = harness.path("activated.log");
    let daemon = spawn_activated(
        &harness,
        &[proxy.as_raw_fd(), control.as_raw_fd()],
        "proxy:control",
        &log,
    );
    harness.daemon = Some(daemon);
    wait_until(PATIENCE, "the daemon to be ready", || {
        log_has(&log, "control socket listening")
    });

    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    early.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    let status = harness.status();
    assert_eq!(
        status["proxy"]["port"], port,
        "status reports the passed socket"
    );
    harness.deploy("v1");
    assert_eq!(http_get(port, "/release").unwrap(), (200, "v1".to_string()));
    assert!(
        http_get(harness.proxy_port, "/release").is_err(),
        "the configured port is not bound"
    );

    // The passed sockets stay in the daemon: the managed process has neither.
    let ours: Vec<String> = [proxy.as_raw_fd(), control.as_raw_fd()]
        .iter()
        .map(|fd| {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            link.to_string_lossy().into_owned()
        })
        .collect();
    let web = web_pid(&harness, "v1").to_string();
    let inherited: Vec<String> = socket_links(&web)
        .into_iter()
        .filter(|l| ours.contains(l))
        .collect();
    assert!(inherited.is_empty(), "web inherited {inherited:?}");

    assert_eq!(harness.shutdown(), 0);
    // systemd's socket file stays, and so does the listening socket: a client
    // connecting between two daemon runs is queued, not refused.
    assert!(harness.socket.exists());
    let queued = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(5),
    );
    assert!(queued.is_ok());
    let events = std::fs::read_to_string(&log).unwrap();
    assert!(events.contains(&format!("\"port\":{port}")), "{events}");
}

#[test]
fn an_unknown_socket_name_fails_startup_with_a_fix() {
    let mut harness = Harness::new(base_config);
    let stray = TcpListener::bind("127.0.0.1:0").unwrap();
    let log = harness.path("bad.log");
    let daemon = spawn_activated(&harness, &[stray.as_raw_fd()], "web", &log);
    harness.daemon = Some(daemon);
    assert_eq!(harness.wait_exit(PATIENCE), 1);
    let stderr = harness.daemon.as_ref().unwrap().stderr.clone();
    wait_until(PATIENCE, "the error", || {
        stderr
            .lines()
            .join("\n")
            .contains("the socket named \"web\" is not one rollbridge uses")
    });
}
