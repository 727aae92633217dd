#!/usr/bin/env python3
"""The supervision benchmark of rollbridge (driven by benches/supervision/run.sh).

For each binary (the baseline first, then the current build) and each replica
count, one daemon in a scratch directory runs a release of one proxied web app
and a `companion` with N memory-supervised replicas (`exec sleep`, checked every
second), and we measure:
  cpu       the daemon's CPU over several windows (median), % of one core
  rss       the daemon's VmRSS once settled
  status    raw `status` over the control socket (median of up to 30 in 5 s), ms
  deploy    a deploy that replaces the N replicas: request to reply, s (median
            of 2; one at 1,000)
  retire    reply to the moment every process of the old release is gone, s
Then the daemon is shut down and every pid it started must be gone.
Prints a table and, with --json, writes the numbers.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import wait_for  # noqa: E402

READY = '"control socket listening"'
TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(path, request, timeout=300):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


class Run:
    """One daemon of one binary at one replica count."""

    def __init__(self, binary, work, replicas):
        self.binary = binary
        self.dir = os.path.join(work, f"{os.path.basename(binary)}-{replicas}")
        os.makedirs(self.dir)
        self.socket = os.path.join(self.dir, "control.sock")
        self.replicas = replicas
        config = {
            "application": "supervision-bench",
            "control": {"path": self.socket},
            "proxy": {"host": "127.0.0.1", "port": free_port(), "healthTimeoutMs": 60000},
            "processes": [
                {
                    "id": "web",
                    "policy": "proxied",
                    "command": "exec python3 -m http.server --bind 127.0.0.1 $ROLLBRIDGE_PORT",
                    "port": {"from": 0, "to": 0},
                    "health": {"path": "/", "timeoutMs": 60000, "intervalMs": 20},
                },
                {
                    "id": "worker",
                    "policy": "companion",
                    "command": "exec sleep 100000",
                    "replicas": replicas,
                    "outputLines": 5,
                    "memory": {"limitBytes": 1 << 30, "checkIntervalMs": 1000},
                },
            ],
        }
        self.config = os.path.join(self.dir, "rollbridge.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.out = open(os.path.join(self.dir, "daemon.jsonl"), "w+")
        self.daemon = subprocess.Popen(
            [binary, "daemon", "--config", self.config],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.ready, "the daemon's control socket", 30)

    def ready(self):
        with open(self.out.name) as f:
            return READY in f.read()

    def release(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def deploy(self, name):
        started = time.monotonic()
        reply = control(self.socket, {"command": "deploy", "releasePath": self.release(name), "releaseId": name})
        if reply.get("status") != "success":
            raise RuntimeError(f"deploy {name}: {reply}")
        return time.monotonic() - started

    def pids_of(self, release_id):
        status = control(self.socket, {"command": "status"})
        for release in status.get("releases", []):
            if release["releaseId"] == release_id:
                return [p["pid"] for p in release["processes"] if "pid" in p]
        return []

    def started_pids(self):
        with open(self.out.name) as f:
            return [
                event["data"]["pid"]
                for event in map(json.loads, filter(None, f.read().splitlines()))
                if event.get("message") == "process started" and event["data"].get("pid")
            ]

    def cpu_percent(self, windows, seconds):
        samples = []
        for _ in range(windows):
            before, at = cpu_seconds(self.daemon.pid), time.monotonic()
            time.sleep(seconds)
            samples.append(100 * (cpu_seconds(self.daemon.pid) - before) / (time.monotonic() - at))
        return statistics.median(samples)

    def status_ms(self, count, budget=5.0):
        """Median of `count` requests, or of as many as fit in `budget` seconds
        (at least 5): a slow daemon must not stretch the run."""
        times = []
        deadline = time.monotonic() + budget
        while len(times) < count and (len(times) < 5 or time.monotonic() < deadline):
            started = time.perf_counter()
            control(self.socket, {"command": "status"})
            times.append(1000 * (time.perf_counter() - started))
        return statistics.median(times)

    def shutdown(self):
        started = self.started_pids()
        try:
            control(self.socket, {"command": "shutdown"}, timeout=120)
        except OSError:
            pass
        self.daemon.wait(timeout=180)
        left = [pid for pid in started if running(pid)]
        for pid in left:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
        return left


def measure(binary, work, replicas, args):
    log(f"{os.path.basename(binary)}: {replicas} replicas")
    run = Run(binary, work, replicas)
    try:
        first = run.deploy("v1")
        time.sleep(args.settle)
        cpu = run.cpu_percent(args.windows, args.window_seconds)
        rss = rss_kib(run.daemon.pid)
        status = run.status_ms(args.status_runs)
        deploys, retires = [], []
        # The slowest counts get one replacing deploy (the baseline needs minutes).
        rounds = args.deploys if replicas < 1000 else 1
        for round_number in range(rounds):
            old = run.pids_of(f"v{round_number + 1}")
            deploys.append(run.deploy(f"v{round_number + 2}"))
            replied = time.monotonic()
            wait_for(lambda: not any(running(pid) for pid in old), "the old release to retire", 300)
            retires.append(time.monotonic() - replied)
        deploy, retire = statistics.median(deploys), statistics.median(retires)
    finally:
        left = run.shutdown()
    result = {
        "replicas": replicas,
        "firstDeployS": round(first, 3),
        "cpuPercent": round(cpu, 2),
        "rssMiB": round(rss / 1024, 1),
        "statusMs": round(status, 3),
        "deployS": round(deploy, 3),
        "retireS": round(retire, 3),
        "leftRunning": len(left),
    }
    log(f"  {json.dumps(result)}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--replicas", default="50,200,1000")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--status-runs", type=int, default=30)
    parser.add_argument("--deploys", type=int, default=2, help="replacing deploys per count below 1,000 (median)")
    parser.add_argument("--json")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    results = {}
    for label, binary in (("baseline", args.baseline), ("current", args.current)):
        results[label] = [measure(binary, args.work, n, args) for n in counts]
    header = f"{'replicas':>8} {'':>9} {'cpu %':>7} {'rss MiB':>8} {'status ms':>10} {'deploy s':>9} {'retire s':>9} {'left':>5}"
    print(header)
    for index, count in enumerate(counts):
        for label in ("baseline", "current"):
            r = results[label][index]
            print(
                f"{count:>8} {label:>9} {r['cpuPercent']:>7.2f} {r['rssMiB']:>8.1f} {r['statusMs']:>10.3f}"
                f" {r['deployS']:>9.3f} {r['retireS']:>9.3f} {r['leftRunning']:>5}"
            )
        b, c = results["baseline"][index], results["current"][index]
        ratio = lambda key: (c[key] / b[key]) if b[key] else float("nan")
        print(
            f"{count:>8} {'ratio':>9} {ratio('cpuPercent'):>7.3f} {ratio('rssMiB'):>8.3f} {ratio('statusMs'):>10.3f}"
            f" {ratio('deployS'):>9.3f} {ratio('retireS'):>9.3f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
