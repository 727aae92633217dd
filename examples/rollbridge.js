// The same config as rollbridge.lua / rollbridge.json, written as a legacy
// JavaScript module (the format of the JavaScript rollbridge). rollbridge runs
// `node` to evaluate it, so Node.js must be installed; the export may be an
// object or a (possibly async) function. Functions inside the config are not
// supported: use command strings or {plugin: ...} hook values, or move to Lua.

const range = (from, to) => ({ from, to });
const cacheUrl = "http://127.0.0.1:{{ports.cache}}";

module.exports = async function config() {
  return {
    application: process.env.ACME_APPLICATION || "acme-shop",
    control: { path: "/tmp/rollbridge-acme-shop.sock", mode: "660" },
    proxy: {
      host: "127.0.0.1",
      port: 4500,
      healthPath: "/ping",
      healthTimeoutMs: 30000,
      drainTimeoutMs: 30000,
    },
    releaseRetention: { keep: 5 },
    statePath: "/tmp/rollbridge-acme-shop-state.json",
    processes: [
      {
        id: "cache",
        policy: "service",
        command: "python3 {{releasePath}}/cache.py --port {{port}}",
        port: range(18600, 18699),
      },
      {
        id: "web",
        policy: "proxied",
        command: "python3 {{releasePath}}/app.py --port {{port}}",
        port: range(18000, 18099),
        env: { APP_ENV: "production", CACHE_URL: cacheUrl },
        health: { path: "/ping", timeoutMs: 20000, intervalMs: 250 },
        lifecycle: {
          quietCommand: "kill -USR1 $ROLLBRIDGE_PID",
          drain: { plugin: "wait-exit" },
          drainTimeoutMs: 5000,
        },
        memory: { limitBytes: 536870912, warnBytes: 402653184 },
      },
      {
        id: "worker",
        policy: "companion",
        command: "python3 {{releasePath}}/worker.py --queue default",
        replicas: 2,
        nonBlockingDrain: true,
        gracefulStopMs: 30000,
        restart: { maxRestarts: 5, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000 },
        env: { CACHE_URL: cacheUrl },
      },
      {
        id: "scheduler",
        policy: "singleton",
        command: "python3 {{releasePath}}/scheduler.py",
        stopSignal: "SIGINT",
      },
    ],
  };
};
