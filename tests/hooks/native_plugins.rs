//! Native plugins end to end: real shared libraries (the example Rust plugin, a
//! misbehaving Rust fixture and small C libraries compiled here with `cc`) loaded
//! through libloading and called through the plugin registry.

use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::Policy;
use rollbridge::events::EventSink;
use rollbridge::plugins::native::{
    ABI_VERSION, HookKind, MAX_ABANDONED_CALLS, NativePluginError, NativePlugins,
    check_native_plugins,
};
use rollbridge::plugins::{
    HealthVerdict, HookCall, HookError, LegacyProcess, ProcessInfo, Registry, Stage,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::support::wait::{INTERVAL, PATIENCE};
use tokio::time::Instant;

// ---------------------------------------------------------------- fixtures

/// The workspace's plugin crates, built once per test binary.
struct BuiltPlugins {
    queue_drain: PathBuf,
    misbehaving: PathBuf,
}

/// Builds the plugin crates with the same cargo and target dir as this test run,
/// so a clean checkout running only `cargo test` gets them too. The paths come
/// from cargo's own artifact messages rather than guessed target-dir layouts.
fn built_plugins() -> &'static BuiltPlugins {
    static BUILT: OnceLock<BuiltPlugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "-p",
                "example-queue-drain",
                "-p",
                "misbehaving-test-plugin",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for the plugin crates");
        assert!(output.status.success(), "building the plugin crates failed");
        let library_of = |target: &str| -> PathBuf {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|message| message["reason"] == "compiler-artifact")
                .filter(|message| message["target"]["name"] == target)
                .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
                .filter_map(|name| name.as_str().map(PathBuf::from))
                .find(|name| name.extension().is_some_and(|ext| ext == "so"))
                .unwrap_or_else(|| panic!("cargo reported no shared library for {target}"))
        };
        BuiltPlugins {
            queue_drain: library_of("example_queue_drain"),
            misbehaving: library_of("misbehaving_test_plugin"),
        }
    })
}

/// Compiles a C source into a shared library inside `dir`, with the plugin header
/// on the include path.
fn compile_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).unwrap();
    compile_c_file(dir, name, &source_path)
}

fn compile_c_file(dir: &Path, name: &str, source_path: &Path) -> PathBuf {
    let library = dir.join(format!("lib{name}.so"));
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/include");
    let output = Command::new("cc")
        // Hidden visibility: the header alone must keep the entry point exported.
        .args([
            "-Wall",
            "-Werror",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-I",
        ])
        .arg(&include)
        .arg("-o")
        .arg(&library)
        .arg(source_path)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

/// A C plugin whose descriptor fields are given as C expressions.
fn c_plugin(abi_version: &str, name: &str, manifest: &str, call: &str) -> String {
    format!(
        r#"#include <stdlib.h>
#include <string.h>
#include "rollbridge_plugin.h"
static char *call_json(const char *request, size_t request_len, size_t *out_len) {{
    (void)request; (void)request_len;
    const char *answer = "{{\"ok\":true}}";
    *out_len = strlen(answer);
    char *copy = malloc(*out_len);
    memcpy(copy, answer, *out_len);
    return copy;
}}
static void free_json(char *response, size_t len) {{ (void)len; free(response); }}
static const rollbridge_plugin_v1 descriptor = {{
    .abi_version = {abi_version},
    .name = {name},
    .manifest_json = {manifest},
    .call = {call},
    .free_response = free_json,
}};
const rollbridge_plugin_v1 *rollbridge_plugin_entry(void) {{ (void)call_json; return &descriptor; }}
"#
    )
}

fn load_one(path: &Path) -> NativePlugins {
    NativePlugins::load(&[path.to_path_buf()])
        .unwrap_or_else(|error| panic!("loading {} failed: {error}", path.display()))
}

fn load_error(path: &Path) -> NativePluginError {
    match NativePlugins::load(&[path.to_path_buf()]) {
        Ok(_) => panic!("{} loaded but must be refused", path.display()),
        Err(error) => error,
    }
}

fn registry(plugins: NativePlugins) -> Registry {
    Registry::new(vec![Arc::new(plugins)])
}

fn plugin_spec(name: &str, options: Value) -> HookSpec {
    let Value::Object(options) = options else {
        panic!("options must be an object");
    };
    HookSpec::Plugin {
        name: name.to_string(),
        options,
    }
}

fn process_info(cwd: &Path) -> ProcessInfo {
    ProcessInfo {
        id: "worker".into(),
        instance_id: "worker#1".into(),
        pid: Some(4242),
        pgid: Some(4240),
        release_id: "r7".into(),
        release_path: "/srv/app/releases/r7".into(),
        revision: "abc123".into(),
        port: None,
        policy: Policy::Companion,
        replica_index: 1,
        replica_count: 2,
        env: vec![("QUEUE_NAME".into(), "jobs".into())],
        cwd: cwd.to_path_buf(),
    }
}

fn hook_call(stage: Stage, spec: &HookSpec, within: Duration) -> HookCall {
    HookCall {
        stage,
        process: process_info(Path::new("/srv/app/releases/r7")),
        deadline: Instant::now() + within,
        options: spec.options(),
        events: EventSink::silent(),
    }
}

fn failure_text(result: Result<impl std::fmt::Debug, HookError>) -> String {
    match result {
        Err(HookError::Failed(reason)) => reason,
        other => panic!("expected HookError::Failed, got {other:?}"),
    }
}

/// Writes the file through a rename so the plugin never sees it half-written.
fn write_atomically(path: &Path, text: &str) {
    let staging = path.with_extension("tmp");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

// ---------------------------------------------------------------- example plugin

#[tokio::test]
async fn example_drain_returns_once_the_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let depth_file = dir.path().join("depth");
    write_atomically(&depth_file, "3\n");
    let registry = registry(load_one(&built_plugins().queue_drain));
    let spec = plugin_spec(
        "queue-drain",
        json!({ "depthFile": depth_file.to_str().unwrap(), "pollMs": 10 }),
    );
    let drain = registry.lifecycle(&spec, Stage::Drain).expect("drain hook");
    assert_eq!(drain.name(), "queue-drain");

    // A worker that finishes one queued job at a time; the sleep is each job's
    // work, not a wait for a condition (no assertion depends on its length).
    let worker_file = depth_file.clone();
    let worker = std::thread::spawn(move || {
        for depth in (0..3).rev() {
            std::thread::sleep(Duration::from_millis(40));
            write_atomically(&worker_file, &format!("{depth}\n"));
        }
    });
    let outcome = drain
        .run(hook_call(Stage::Drain, &spec, Duration::from_secs(30)))
        .await;
    // The hook may only finish after the worker wrote the final 0.
    let depth_at_return = std::fs::read_to_string(&depth_file).unwrap();
    worker.join().unwrap();
    assert_eq!(outcome, Ok(()));
    assert_eq!(depth_at_return.trim(), "0");
}

#[tokio::test]
async fn example_drain_gives_up_at_the_deadline_when_the_queue_never_empties() {
    let dir = tempfile::tempdir().unwrap();
    let depth_file = dir.path().join("depth");
    write_atomically(&depth_file, "5");
    let registry = registry(load_one(&built_plugins().queue_drain));
    let spec = plugin_spec(
        "queue-drain",
        json!({ "depthFile": depth_file.to_str().unwrap(), "pollMs": 20 }),
    );
    let drain = registry.lifecycle(&spec, Stage::Drain).unwrap();
    let bound = Duration::from_millis(600);
    let started = std::time::Instant::now();
    let outcome = drain.run(hook_call(Stage::Drain, &spec, bound)).await;
    let elapsed = started.elapsed();
    // The plugin answers shortly before the deadline with its own reason; on a
    // loaded machine the host's deadline may win the race instead. Either way the
    // call fails at the bound, not before it and not long after.
    match outcome {
        Err(HookError::Failed(reason)) => {
            assert!(reason.contains("is still 5"), "{reason}")
        }
        Err(HookError::TimedOut(_)) => {}
        other => panic!("a queue that never empties must fail the drain, got {other:?}"),
    }
    assert!(elapsed >= bound / 2, "gave up after only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn example_drain_reports_option_mistakes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(load_one(&built_plugins().queue_drain));

    let missing = dir.path().join("no-such-file");
    let spec = plugin_spec(
        "queue-drain",
        json!({ "depthFile": missing.to_str().unwrap() }),
    );
    let drain = registry.lifecycle(&spec, Stage::Drain).unwrap();
    let reason = failure_text(
        drain
            .run(hook_call(Stage::Drain, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(reason.contains("does not exist"), "{reason}");

    let spec = plugin_spec("queue-drain", json!({}));
    let drain = registry.lifecycle(&spec, Stage::Drain).unwrap();
    let reason = failure_text(
        drain
            .run(hook_call(Stage::Drain, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(reason.contains("option depthFile is required"), "{reason}");
}

#[tokio::test]
async fn example_health_follows_the_ready_file() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready");
    let registry = registry(load_one(&built_plugins().queue_drain));
    let spec = plugin_spec(
        "queue-drain",
        json!({ "readyFile": ready_file.to_str().unwrap() }),
    );
    let health = registry.health(&spec).expect("health hook");
    let probe = || health.probe(hook_call(Stage::Health, &spec, Duration::from_secs(30)));

    let Ok(HealthVerdict::NotYet(detail)) = probe().await else {
        panic!("no ready file must mean not ready");
    };
    assert!(detail.contains("does not exist yet"), "{detail}");

    write_atomically(&ready_file, "migrating\n");
    let Ok(HealthVerdict::NotYet(detail)) = probe().await else {
        panic!("a ready file saying something else must mean not ready");
    };
    assert!(detail.contains("migrating"), "{detail}");

    write_atomically(&ready_file, "ready\n");
    assert_eq!(probe().await, Ok(HealthVerdict::Healthy));
}

#[test]
fn registry_resolves_only_the_hooks_a_plugin_declares() {
    let plugins = load_one(&built_plugins().queue_drain);
    let described = plugins.describe();
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].name, "queue-drain");
    assert_eq!(described[0].hooks, vec![HookKind::Drain, HookKind::Health]);
    let registry = registry(plugins);
    assert_eq!(registry.plugin_names(), vec!["queue-drain".to_string()]);

    let spec = plugin_spec("queue-drain", json!({}));
    assert!(registry.lifecycle(&spec, Stage::Drain).is_ok());
    assert!(registry.health(&spec).is_ok());
    assert!(registry.lifecycle(&spec, Stage::Stop).is_err());
    assert!(registry.lifecycle(&spec, Stage::Quiet).is_err());
    assert!(registry.matcher(&spec).is_err());
    let other = plugin_spec("queue-fill", json!({}));
    assert!(registry.lifecycle(&other, Stage::Drain).is_err());
    assert!(
        registry
            .lifecycle(&HookSpec::Command("true".into()), Stage::Drain)
            .is_err()
    );
}

// ---------------------------------------------------------------- loading errors

#[test]
fn a_wrong_abi_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = c_plugin(
        "99",
        r#""future""#,
        r#""{\"hooks\":[\"drain\"]}""#,
        "call_json",
    );
    let library = compile_c(dir.path(), "future", &source);
    let error = load_error(&library);
    assert_eq!(
        error,
        NativePluginError::AbiMismatch {
            path: library.clone(),
            found: 99,
            supported: ABI_VERSION,
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("ABI version 99") && message.contains("supports version 1"),
        "{message}"
    );
}

#[test]
fn a_library_without_the_entry_point_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let library = compile_c(
        dir.path(),
        "unrelated",
        "int unrelated_function(void) { return 42; }\n",
    );
    let error = load_error(&library);
    let NativePluginError::MissingEntry { symbol, reason, .. } = &error else {
        panic!("expected MissingEntry, got {error:?}");
    };
    assert_eq!(*symbol, "rollbridge_plugin_entry");
    // The loader's own explanation, taken from the libloading error's source.
    assert!(reason.contains("undefined symbol"), "{reason}");
    assert!(error.to_string().contains("is not a rollbridge plugin"));
}

#[test]
fn files_that_are_not_libraries_are_refused_with_the_loader_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("libnotes.so");
    std::fs::write(&text_file, "these are notes, not machine code\n".repeat(8)).unwrap();
    let error = load_error(&text_file);
    let NativePluginError::Load { path, reason } = &error else {
        panic!("expected Load, got {error:?}");
    };
    assert_eq!(path, &text_file);
    assert!(reason.contains("invalid ELF header"), "{reason}");
    assert!(error.to_string().contains(text_file.to_str().unwrap()));

    let missing = dir.path().join("libmissing.so");
    let NativePluginError::Load { reason, .. } = load_error(&missing) else {
        panic!("a missing file must be a load error");
    };
    assert!(reason.contains("No such file"), "{reason}");
}

#[test]
fn bad_descriptors_and_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let drain_manifest = r#""{\"hooks\":[\"drain\"]}""#;
    // (library, name expression, manifest expression, call expression, expected
    // error kind, text the message must contain)
    let cases = [
        (
            "nullcall",
            r#""nullcall""#,
            drain_manifest,
            "NULL",
            "descriptor",
            "call function pointer is NULL",
        ),
        (
            "nullname",
            "NULL",
            drain_manifest,
            "call_json",
            "descriptor",
            "name is NULL",
        ),
        (
            "spacey",
            r#""has space""#,
            drain_manifest,
            "call_json",
            "descriptor",
            "contains ' '",
        ),
        (
            "typo",
            r#""typo""#,
            r#""{\"hooks\":[\"drian\"]}""#,
            "call_json",
            "manifest",
            "unknown hook kind \"drian\"",
        ),
        (
            "notjson",
            r#""notjson""#,
            r#""hooks: drain""#,
            "call_json",
            "manifest",
            "not valid JSON",
        ),
    ];
    for (library, name, manifest, call, kind, text) in cases {
        let source = c_plugin("1", name, manifest, call);
        let error = load_error(&compile_c(dir.path(), library, &source));
        let actual_kind = match &error {
            NativePluginError::InvalidDescriptor { .. } => "descriptor",
            NativePluginError::InvalidManifest { .. } => "manifest",
            _ => "other",
        };
        assert_eq!(actual_kind, kind, "{library}: {error:?}");
        assert!(error.to_string().contains(text), "{library}: {error}");
    }
}

#[test]
fn two_libraries_with_one_plugin_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let original = built_plugins().queue_drain.clone();
    let copy = dir.path().join("libqueue_drain_copy.so");
    std::fs::copy(&original, &copy).unwrap();
    let error = NativePlugins::load(&[original.clone(), copy.clone()]).unwrap_err();
    assert_eq!(
        error,
        NativePluginError::DuplicateName {
            name: "queue-drain".into(),
            first: original.clone(),
            second: copy.clone(),
        }
    );
}

#[test]
fn check_reports_every_library_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let queue_drain = built_plugins().queue_drain.clone();
    let misbehaving = built_plugins().misbehaving.clone();
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, "junk").unwrap();
    let report = check_native_plugins(&[
        queue_drain.clone(),
        junk.clone(),
        misbehaving.clone(),
        queue_drain.clone(),
    ]);
    let paths: Vec<&PathBuf> = report.iter().map(|(path, _)| path).collect();
    assert_eq!(paths, vec![&queue_drain, &junk, &misbehaving, &queue_drain]);
    assert_eq!(report[0].1, Ok("queue-drain".to_string()));
    assert!(matches!(report[1].1, Err(NativePluginError::Load { .. })));
    assert_eq!(report[2].1, Ok("misbehaving".to_string()));
    assert!(matches!(
        report[3].1,
        Err(NativePluginError::DuplicateName { .. })
    ));
}

// ---------------------------------------------------------------- misbehaving plugins

#[tokio::test]
async fn a_panicking_plugin_reports_an_error_and_everything_carries_on() {
    let registry = registry(load_one(&built_plugins().misbehaving));
    let spec = plugin_spec("misbehaving", json!({ "queue": "jobs" }));

    let drain = registry.lifecycle(&spec, Stage::Drain).unwrap();
    let reason = failure_text(
        drain
            .run(hook_call(Stage::Drain, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(
        reason.contains("panicked: drain exploded on purpose"),
        "{reason}"
    );

    // Same library, same process, next call: still answering, and it shows what
    // the host sends.
    let health = registry.health(&spec).unwrap();
    let Ok(HealthVerdict::NotYet(echo)) = health
        .probe(hook_call(Stage::Health, &spec, Duration::from_secs(30)))
        .await
    else {
        panic!("the health hook must still answer after a panic");
    };
    let request: Value = serde_json::from_str(&echo).unwrap();
    let keys: Vec<&str> = request
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["kind", "stage", "process", "options", "deadlineMs"]);
    assert_eq!(request["kind"], "health");
    assert_eq!(request["stage"], "health");
    assert_eq!(request["options"], json!({ "queue": "jobs" }));
    let deadline_ms = request["deadlineMs"].as_u64().unwrap();
    assert!(deadline_ms > 0 && deadline_ms <= 30_000, "{deadline_ms}");
    assert_eq!(
        request["process"],
        json!({
            "id": "worker",
            "instanceId": "worker#1",
            "pid": 4242,
            "pgid": 4240,
            "releaseId": "r7",
            "releasePath": "/srv/app/releases/r7",
            "revision": "abc123",
            "port": null,
            "policy": "companion",
            "replicaIndex": 1,
            "replicaCount": 2,
            "cwd": "/srv/app/releases/r7",
            "env": { "QUEUE_NAME": "jobs" },
        })
    );
}

#[tokio::test]
async fn malformed_responses_become_failures_with_a_reason() {
    let registry = registry(load_one(&built_plugins().misbehaving));
    let spec = plugin_spec("misbehaving", json!({}));

    let quiet = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let reason = failure_text(
        quiet
            .run(hook_call(Stage::Quiet, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(
        reason.contains("invalid JSON") && reason.contains("this is not json"),
        "{reason}"
    );

    let stop = registry.lifecycle(&spec, Stage::Stop).unwrap();
    let reason = failure_text(
        stop.run(hook_call(Stage::Stop, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(
        reason.contains("unexpected response") && reason.contains(r#"{"status":"done"}"#),
        "{reason}"
    );
}

fn legacy_process() -> LegacyProcess {
    LegacyProcess {
        pid: 777,
        ppid: 1,
        cmdline: "node server.js".into(),
        cwd: Some("/srv/old".into()),
        user: None,
    }
}

#[tokio::test]
async fn a_call_that_overruns_its_deadline_is_abandoned() {
    let registry = registry(load_one(&built_plugins().misbehaving));

    let quick = plugin_spec("misbehaving", json!({ "sleepMs": 0 }));
    let matcher = registry.matcher(&quick).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(matcher.matches(legacy_process(), deadline).await, Ok(true));

    // The plugin would answer `true` after 5 s; only the host giving up at the
    // deadline can produce a timeout.
    let slow = plugin_spec("misbehaving", json!({ "sleepMs": 5000 }));
    let matcher = registry.matcher(&slow).unwrap();
    let deadline = Instant::now() + Duration::from_millis(200);
    let outcome = matcher.matches(legacy_process(), deadline).await;
    assert!(
        matches!(outcome, Err(HookError::TimedOut(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_plugin_that_keeps_overrunning_gets_no_new_work_until_it_catches_up() {
    let registry = registry(load_one(&built_plugins().misbehaving));
    let slow = plugin_spec("misbehaving", json!({ "sleepMs": 1500 }));
    let matcher = registry.matcher(&slow).unwrap();
    for _ in 0..MAX_ABANDONED_CALLS {
        let deadline = Instant::now() + Duration::from_millis(30);
        let outcome = matcher.matches(legacy_process(), deadline).await;
        assert!(
            matches!(outcome, Err(HookError::TimedOut(_))),
            "{outcome:?}"
        );
    }

    let quick = plugin_spec("misbehaving", json!({ "sleepMs": 0 }));
    let matcher = registry.matcher(&quick).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = failure_text(matcher.matches(legacy_process(), deadline).await);
    assert!(reason.contains("past their deadline"), "{reason}");

    // Once the stuck calls return, the plugin is served again.
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let deadline = Instant::now() + Duration::from_secs(5);
            match matcher.matches(legacy_process(), deadline).await {
                Ok(true) => break,
                Err(HookError::Failed(reason)) if reason.contains("past their deadline") => {
                    // Refused at once while the stuck calls run: ask again at
                    // the suites' polling interval.
                    tokio::time::sleep(INTERVAL).await;
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    })
    .await;
    assert!(served.is_ok(), "stuck calls never finished");
}

#[tokio::test]
async fn a_deadline_already_past_does_not_call_the_plugin() {
    let registry = registry(load_one(&built_plugins().misbehaving));
    let spec = plugin_spec("misbehaving", json!({ "sleepMs": 0 }));
    let matcher = registry.matcher(&spec).unwrap();
    let outcome = matcher.matches(legacy_process(), Instant::now()).await;
    assert_eq!(outcome, Err(HookError::TimedOut(0)));
}

// ---------------------------------------------------------------- C plugins

#[tokio::test]
async fn the_c_example_plugin_builds_against_the_header_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/example-c/always_ready.c");
    let library = compile_c_file(dir.path(), "always_ready", &source);
    let registry = registry(load_one(&library));
    let spec = plugin_spec("always-ready", json!({}));
    let health = registry.health(&spec).unwrap();
    let verdict = health
        .probe(hook_call(Stage::Health, &spec, Duration::from_secs(30)))
        .await;
    assert_eq!(verdict, Ok(HealthVerdict::Healthy));
}

#[tokio::test]
async fn a_c_plugin_returning_null_or_forgetting_the_length_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let source = r#"#include <stdlib.h>
#include <string.h>
#include "rollbridge_plugin.h"
static char *call(const char *request, size_t request_len, size_t *out_len) {
    (void)request_len;
    if (strstr(request, "\"kind\":\"quiet\"") != NULL) return NULL;
    char *answer = malloc(16);
    strcpy(answer, "{\"ok\":true}");
    (void)out_len; /* forgets to set the length */
    return answer;
}
static void release(char *response, size_t len) { (void)len; free(response); }
static const rollbridge_plugin_v1 descriptor = {
    ROLLBRIDGE_PLUGIN_ABI_VERSION, "careless", "{\"hooks\":[\"quiet\",\"stop\"]}", call, release,
};
const rollbridge_plugin_v1 *rollbridge_plugin_entry(void) { return &descriptor; }
"#;
    let library = compile_c(dir.path(), "careless", source);
    let registry = registry(load_one(&library));
    let spec = plugin_spec("careless", json!({}));

    let quiet = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let reason = failure_text(
        quiet
            .run(hook_call(Stage::Quiet, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(reason.contains("NULL response"), "{reason}");

    let stop = registry.lifecycle(&spec, Stage::Stop).unwrap();
    let reason = failure_text(
        stop.run(hook_call(Stage::Stop, &spec, Duration::from_secs(30)))
            .await,
    );
    assert!(reason.contains("empty response"), "{reason}");
}

// ---------------------------------------------------------------- validate

/// Runs `rollbridge validate --json` on a JSON config written into `dir`.
fn validate_json(dir: &Path, config: Value) -> (bool, Value) {
    let path = dir.join("rollbridge.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rollbridge"))
        .args(["validate", "--json", "--config"])
        .arg(&path)
        .output()
        .expect("run rollbridge validate");
    let report: Value = serde_json::from_slice(&output.stdout).expect("validate --json output");
    (output.status.success(), report)
}

fn config_with_native(library: &Path, drain: Value) -> Value {
    serde_json::json!({
        "proxy": {"port": 0},
        "plugins": {"native": [library.to_string_lossy()]},
        "processes": [
            {"id": "web", "policy": "proxied", "command": "true", "port": {"from": 0, "to": 0}},
            {"id": "worker", "command": "true",
             "lifecycle": {"drain": drain, "drainTimeoutMs": 1000}}
        ]
    })
}

#[test]
fn validate_opens_native_libraries_and_learns_their_plugin_names() {
    let dir = tempfile::tempdir().unwrap();
    let library = &built_plugins().queue_drain;
    let (ok, report) = validate_json(
        dir.path(),
        config_with_native(
            library,
            serde_json::json!({"plugin": "queue-drain", "depthFile": "/tmp/q"}),
        ),
    );
    assert!(ok, "{report:#}");
    assert_eq!(report["valid"], true);

    let (ok, report) = validate_json(
        dir.path(),
        config_with_native(library, serde_json::json!({"plugin": "no-such-plugin"})),
    );
    assert!(!ok);
    let messages = report["issues"].to_string();
    assert!(messages.contains("no-such-plugin"), "{messages}");
}

#[test]
fn validate_reports_a_native_library_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let (ok, report) = validate_json(
        dir.path(),
        config_with_native(&fake, serde_json::json!("true")),
    );
    assert!(!ok);
    let messages = report["issues"].to_string();
    assert!(messages.contains("could not be loaded"), "{messages}");
}
