#!/usr/bin/env python3
"""The footprint benchmark of rollbridge (driven by benches/footprint/run.sh).

Starts one daemon from a Lua config in a scratch directory and measures, in order:
  1. idle RSS of the daemon process (no release);
  2. RSS with one release deployed;
  3. wall time of `rollbridge status` and `rollbridge validate` as whole processes
     (Lua and JSON config), plus `rollbridge --version` as the floor of any start;
  4. deploy CLI wall time minus the app's own boot time, over several deploys;
  5. RSS per idle WebSocket: 2,000 (by default) held open through the proxy.
Then shuts the daemon down and checks that nothing it started is left running.
See README.md next to this file for what each number means.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
READY_LINE = '"control socket listening"'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollbridge", required=True, help="the rollbridge binary to measure")
    parser.add_argument("--work", required=True, help="scratch directory (must exist)")
    parser.add_argument("--websockets", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200, help="runs per CLI timing")
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def log(message):
    print(message, file=sys.stderr, flush=True)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss_kib(pid, settle=1.0):
    """VmRSS once it stopped moving: after `settle` seconds, the lowest of 5 samples
    100 ms apart (the daemon's own short-lived work must not count)."""
    time.sleep(settle)
    samples = []
    for _ in range(5):
        samples.append(vm_rss_kib(pid))
        time.sleep(0.1)
    return min(samples)


class Bench:
    def __init__(self, args):
        self.rb = os.path.abspath(args.rollbridge)
        self.work = os.path.abspath(args.work)
        self.args = args
        self.lua_config = os.path.join(self.work, "rollbridge.lua")
        self.json_config = os.path.join(self.work, "rollbridge.json")
        self.boot_log = os.path.join(self.work, "boot.jsonl")
        self.daemon = None
        self.ws_client = None
        self.results = {}

    # ---- set-up -------------------------------------------------------------

    def write_configs(self):
        # The shell records the exec moment, so the app's boot time includes the
        # python interpreter start. Health is polled every 20 ms so the poll
        # interval does not dominate the deploy time.
        command = ('FOOTPRINT_EXEC_NS=$(date +%s%N) exec python3 '
                   '{{releasePath}}/upstream.py')
        config = {
            "application": "footprint",
            "control": {"path": os.path.join(self.work, "control.sock")},
            "proxy": {"port": 0, "drainTimeoutMs": 2000},
            "processes": [{
                "id": "web",
                "policy": "proxied",
                "command": command,
                "port": 0,
                "env": {"FOOTPRINT_BOOT_LOG": self.boot_log},
                "health": {"path": "/ping", "intervalMs": 20, "timeoutMs": 10000},
                "gracefulStopMs": 5000,
            }],
        }
        with open(self.json_config, "w") as handle:
            json.dump(config, handle, indent=2)
        with open(self.lua_config, "w") as handle:
            handle.write("-- written by benches/footprint/footprint.py\nreturn "
                         + to_lua(config) + "\n")

    def make_release(self, release_id):
        path = os.path.join(self.work, "releases", release_id)
        os.makedirs(path, exist_ok=True)
        shutil.copy(os.path.join(HERE, "upstream.py"), path)
        return path

    def cli(self, *args, check=True):
        completed = subprocess.run([self.rb, *args], capture_output=True, text=True)
        if check and completed.returncode != 0:
            raise RuntimeError(f"rollbridge {' '.join(args)} failed: {completed.stderr.strip()}")
        return completed

    def status(self):
        return json.loads(self.cli("status", "--config", self.lua_config).stdout)

    def start_daemon(self):
        daemon_log = open(os.path.join(self.work, "daemon.log"), "w")
        self.daemon = subprocess.Popen([self.rb, "daemon", "--config", self.lua_config],
                                       stdout=daemon_log, stderr=subprocess.STDOUT)
        with open(os.path.join(self.work, "pids"), "a") as pids:
            pids.write(f"{self.daemon.pid}\n")

        def ready():
            if self.daemon.poll() is not None:
                raise RuntimeError("the daemon exited during start: see daemon.log")
            with open(daemon_log.name) as lines:
                return READY_LINE in lines.read()
        wait_for(ready, "the daemon's readiness line")
        self.proxy_port = self.status()["proxy"]["port"]

    # ---- measurements -------------------------------------------------------

    def deploy(self, release_id):
        path = self.make_release(release_id)
        started = time.perf_counter()
        self.cli("deploy", "--config", self.lua_config, "--release-path", path,
                 "--release-id", release_id)
        return time.perf_counter() - started

    def boot_record(self, release_id):
        def find():
            if not os.path.exists(self.boot_log):
                return None
            with open(self.boot_log) as lines:
                for line in lines:
                    record = json.loads(line)
                    if record["releaseId"] == release_id:
                        return record
            return None
        return wait_for(find, f"the boot record of {release_id}", timeout=5)

    def wait_retired(self, release_id):
        """Waits until the retired release `release_id` has stopped completely, so
        its drain and stop do not overlap the next deploy."""
        def stopped():
            for release in self.status()["releases"]:
                if release["releaseId"] == release_id:
                    return release["state"] == "stopped"
            raise RuntimeError(f"release {release_id} is missing from status")
        wait_for(stopped, f"release {release_id} to stop")

    def measure_deploys(self, first_wall):
        rows = [("r1", first_wall)]
        previous = "r1"
        for index in range(2, self.args.deploys + 1):
            release_id = f"r{index}"
            rows.append((release_id, self.deploy(release_id)))
            self.wait_retired(previous)
            previous = release_id
        walls, boots, overheads, poll_waits = [], [], [], []
        for release_id, wall in rows:
            record = self.boot_record(release_id)
            boot = (record["firstPingNs"] - record["execNs"]) / 1e9
            walls.append(wall)
            boots.append(boot)
            overheads.append(wall - boot)
            poll_waits.append((record["firstPingNs"] - record["listeningNs"]) / 1e9)
        self.results["deploy"] = {
            "deploys": len(rows),
            "cliWallMs": ms(statistics.median(walls)),
            "appBootMs": ms(statistics.median(boots)),
            "overheadMs": ms(statistics.median(overheads)),
            "overheadMinMs": ms(min(overheads)),
            "overheadMaxMs": ms(max(overheads)),
            "healthPollWaitMs": ms(statistics.median(poll_waits)),
        }

    def time_commands(self):
        commands = {
            "version": [self.rb, "--version"],
            "statusLua": [self.rb, "status", "--config", self.lua_config],
            "statusJson": [self.rb, "status", "--config", self.json_config],
            "validateLua": [self.rb, "validate", "--config", self.lua_config],
            "validateJson": [self.rb, "validate", "--config", self.json_config],
        }
        timings = {}
        hyperfine = shutil.which("hyperfine")
        for name, argv in commands.items():
            if hyperfine:
                timings[name] = hyperfine_timing(hyperfine, argv, self.args.runs, self.work)
            else:
                timings[name] = loop_timing(argv, self.args.runs)
            log(f"  {name}: {timings[name]['wallMs']:.2f} ms wall, "
                f"{timings[name]['cpuMs']:.2f} ms CPU")
        self.results["cliMs"] = timings
        self.results["timer"] = "hyperfine" if hyperfine else "python loop"

    def open_websockets(self, count):
        client = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "ws_client.py"), str(self.proxy_port), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ws_client = client
        line = client.stdout.readline().strip()
        if line != f"open {count}":
            client.kill()
            raise RuntimeError(f"the WebSocket client could not open {count} sessions ({line!r})")
        return client

    def close_websockets(self, client):
        client.stdin.write("done\n")
        client.stdin.flush()
        summary = client.stdout.readline().strip()
        client.wait(timeout=30)
        self.ws_client = None
        return summary

    def measure_websockets(self):
        count = self.args.websockets
        # One small round first, so one-time allocations of the upgrade path are
        # not charged to the 2,000.
        self.close_websockets(self.open_websockets(20))
        before = settled_rss_kib(self.daemon.pid)
        client = self.open_websockets(count)
        held = settled_rss_kib(self.daemon.pid)
        summary = self.close_websockets(client)
        if summary != f"held {count} dropped 0":
            raise RuntimeError(f"WebSockets were dropped while held: {summary}")
        after = settled_rss_kib(self.daemon.pid)
        self.results["websockets"] = {
            "count": count,
            "rssBeforeKiB": before,
            "rssHeldKiB": held,
            "rssAfterCloseKiB": after,
            "perWebSocketKiB": round((held - before) / count, 2),
        }

    def shutdown(self):
        self.cli("shutdown", "--config", self.lua_config)
        self.daemon.wait(timeout=30)
        leftovers = subprocess.run(["pgrep", "-f", os.path.join(self.work, "releases")],
                                   capture_output=True, text=True).stdout.split()
        if leftovers:
            raise RuntimeError(f"processes left after shutdown: {leftovers}")

    def cleanup(self):
        """Best effort after a failure: nothing this run started may survive it."""
        if self.ws_client and self.ws_client.poll() is None:
            self.ws_client.kill()
            self.ws_client.wait()
        if self.daemon and self.daemon.poll() is None:
            self.cli("shutdown", "--config", self.lua_config, check=False)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def run(self):
        self.write_configs()
        log("starting the daemon")
        self.start_daemon()
        self.results["idleRssKiB"] = settled_rss_kib(self.daemon.pid)
        log(f"  idle RSS: {self.results['idleRssKiB']} KiB")
        first_wall = self.deploy("r1")
        self.results["oneReleaseRssKiB"] = settled_rss_kib(self.daemon.pid)
        log(f"  RSS with one release: {self.results['oneReleaseRssKiB']} KiB")
        log(f"timing CLI commands ({self.args.runs} runs each)")
        self.time_commands()
        log(f"deploying {self.args.deploys} releases")
        self.measure_deploys(first_wall)
        log(f"holding {self.args.websockets} WebSockets through the proxy")
        self.measure_websockets()
        self.results["daemonPeakRssKiB"] = peak_rss_kib(self.daemon.pid)
        log("shutting down")
        self.shutdown()


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def hyperfine_timing(hyperfine, argv, runs, work):
    export = os.path.join(work, "hyperfine.json")
    completed = subprocess.run(
        [hyperfine, "-N", "--style", "none", "--warmup", "10", "--runs", str(runs),
         "--export-json", export, " ".join(quote(a) for a in argv)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"hyperfine failed: {completed.stderr.strip()}")
    with open(export) as handle:
        result = json.load(handle)["results"][0]
    return {"wallMs": result["median"] * 1000,
            "cpuMs": (result["user"] + result["system"]) * 1000}


def loop_timing(argv, runs):
    """The fallback without hyperfine: median wall time of `runs` runs, and the mean
    CPU time (user + system) of the children."""
    for _ in range(10):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples = []
    cpu_before = os.times()
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    cpu_after = os.times()
    cpu = (cpu_after.children_user - cpu_before.children_user
           + cpu_after.children_system - cpu_before.children_system)
    return {"wallMs": statistics.median(samples) * 1000, "cpuMs": cpu / runs * 1000}


def quote(arg):
    return arg if all(c.isalnum() or c in "/._-=" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"


def ms(seconds):
    return round(seconds * 1000, 2)


def to_lua(value, indent=""):
    if isinstance(value, dict):
        inner = indent + "  "
        items = [f"{inner}{key} = {to_lua(item, inner)}," for key, item in value.items()]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list):
        inner = indent + "  "
        items = [f"{inner}{to_lua(item, inner)}," for item in value]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid Lua string literal here


def report(results, websocket_count):
    ws = results["websockets"]
    cli = results["cliMs"]
    deploy = results["deploy"]

    def verdict(ok):
        return "ok" if ok else "MISSED"

    def mib(kib):
        return f"{kib / 1024:.1f} MiB"

    def timing(name):
        return f"{cli[name]['wallMs']:.2f} ms ({cli[name]['cpuMs']:.2f} ms CPU)"
    # (measure, value, target, JavaScript rollbridge, verdict)
    rows = [
        ("daemon idle RSS", mib(results["idleRssKiB"]), "<= 10 MB", "63 MB",
         verdict(results["idleRssKiB"] * 1024 <= 10_000_000)),
        ("RSS with one release", mib(results["oneReleaseRssKiB"]), "", "", ""),
        (f"RSS per idle WebSocket ({websocket_count} open)", f"{ws['perWebSocketKiB']:.1f} KiB",
         "<= 16 KB", "26 KB", verdict(ws["perWebSocketKiB"] * 1024 <= 16_000)),
        (f"RSS before / with {websocket_count} WebSockets / after closing them",
         f"{mib(ws['rssBeforeKiB'])} / {mib(ws['rssHeldKiB'])} / {mib(ws['rssAfterCloseKiB'])}",
         "", "", ""),
        ("`rollbridge status`, Lua config", timing("statusLua"), "<= 5 ms", "193 ms",
         verdict(cli["statusLua"]["wallMs"] <= 5)),
        ("`rollbridge status`, JSON config", timing("statusJson"), "<= 5 ms", "",
         verdict(cli["statusJson"]["wallMs"] <= 5)),
        ("`rollbridge validate`, Lua config", timing("validateLua"), "", "", ""),
        ("`rollbridge validate`, JSON config", timing("validateJson"), "", "", ""),
        ("`rollbridge --version` (start of any command)", timing("version"), "", "", ""),
        ("deploy: CLI wall time", f"{deploy['cliWallMs']:.1f} ms", "", "", ""),
        ("deploy: app boot, exec to first /ping answered", f"{deploy['appBootMs']:.1f} ms",
         "", "", ""),
        ("deploy minus app boot", f"{deploy['overheadMs']:.1f} ms "
         f"(min {deploy['overheadMinMs']:.1f}, max {deploy['overheadMaxMs']:.1f})", "", "", ""),
        ("(in app boot: listening until the first health probe)",
         f"{deploy['healthPollWaitMs']:.1f} ms", "", "", ""),
    ]
    print(f"\nrollbridge footprint: CLI timings are the median wall time of each run "
          f"({results['timer']}) and the mean CPU time; deploy numbers are the median "
          f"of {deploy['deploys']} deploys.\n")
    print("| measure | value | target | JavaScript rollbridge | |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    args = parse_args()
    bench = Bench(args)
    # SIGTERM from run.sh's trap must still run the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.run()
    finally:
        bench.cleanup()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(bench.results, handle, indent=2)
    report(bench.results, args.websockets)


if __name__ == "__main__":
    main()
