//! Legacy JavaScript configs (`.js`, `.mjs`, `.cjs`), evaluated by running `node`.
//!
//! A fresh `node` process imports the module, calls its default export when it is
//! a function (awaiting it), and prints the result as JSON after a marker line. A
//! new process per load means edits are always seen: there is no module cache to
//! bypass. Functions cannot cross into rollbridge, so a config holding any is
//! refused with the paths of the functions.

use super::error::ConfigError;
use super::markers::NON_FINITE_MARKER;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the module may take to evaluate.
const NODE_TIME_LIMIT: Duration = Duration::from_secs(20);
/// The most output read from node.
const MAX_OUTPUT_BYTES: u64 = 32 * 1024 * 1024;
/// Precedes the JSON result on stdout, so output printed by the module itself
/// cannot be mistaken for it.
const RESULT_MARKER: &str = "\u{1}rollbridge-config-result\u{1}";

/// The loader run by `node --input-type=module -e <script> <absolute path>`.
fn loader_script() -> String {
    r#"
import { pathToFileURL } from 'node:url';
const MARKER = __MARKER__;
const NON_FINITE = __NON_FINITE__;
const file = process.argv[1];
const send = (result) => process.stdout.write('\n' + MARKER + JSON.stringify(result) + '\n');
// Whatever the module prints must not get mixed into the result.
console.log = console.error;
console.info = console.error;
const firstLine = (error) => String(error && error.stack ? error.stack : error).split('\n')[0];

async function main() {
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (error) {
    return send({ error: 'import', detail: firstLine(error) });
  }
  let config = mod.default;
  if (config === undefined) return send({ error: 'no-default' });
  if (typeof config === 'function') {
    try {
      config = await config();
    } catch (error) {
      return send({ error: 'call', detail: firstLine(error) });
    }
  }
  const functions = [];
  const seen = new Set();
  const convert = (value, path) => {
    if (typeof value === 'function') { functions.push(path || '(the config itself)'); return null; }
    if (typeof value === 'number') return Number.isFinite(value) ? value : { [NON_FINITE]: String(value) };
    if (typeof value === 'bigint') return Number(value);
    if (typeof value === 'symbol' || value === undefined) return undefined;
    if (value === null || typeof value !== 'object') return value;
    if (typeof value.toJSON === 'function') return convert(value.toJSON(), path);
    if (seen.has(value)) throw { cycle: path || '(the config itself)' };
    seen.add(value);
    let result;
    if (Array.isArray(value)) {
      result = value.map((item, index) => {
        const converted = convert(item, `${path}[${index}]`);
        return converted === undefined ? null : converted;
      });
    } else {
      result = {};
      for (const key of Object.keys(value)) {
        const converted = convert(value[key], path ? `${path}.${key}` : key);
        if (converted !== undefined) result[key] = converted;
      }
    }
    seen.delete(value);
    return result;
  };
  let converted;
  try {
    converted = convert(config, '');
  } catch (error) {
    if (error && error.cycle !== undefined) return send({ error: 'cycle', detail: error.cycle });
    return send({ error: 'call', detail: firstLine(error) });
  }
  if (functions.length > 0) return send({ error: 'functions', detail: functions.join(', ') });
  send({ ok: converted === undefined ? null : converted });
}
await main();
"#
    .replace("__MARKER__", &serde_json::to_string(RESULT_MARKER).unwrap_or_default())
    .replace("__NON_FINITE__", &serde_json::to_string(NON_FINITE_MARKER).unwrap_or_default())
}

pub(crate) fn evaluate(path: &Path) -> Result<Value, ConfigError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Surface a missing or unreadable file the same way as for other formats.
    super::load::read_config(path)?;
    let shown = absolute.display().to_string();

    let mut child = match Command::new("node")
        .arg("--input-type=module")
        .arg("-e")
        .arg(loader_script())
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::evaluation(
                format!(
                    "Cannot load JavaScript config {}: node was not found on PATH",
                    path.display()
                ),
                "Install Node.js so rollbridge can evaluate the legacy .js config, or convert it to rollbridge.lua or rollbridge.json (see docs/config.md).",
            ));
        }
        Err(error) => {
            return Err(ConfigError::evaluation(
                format!("Cannot run node to load {}: {error}", path.display()),
                "Check that the node on PATH can be executed.",
            ));
        }
    };

    let stdout = child.stdout.take().map(read_capped_in_background);
    let stderr = child.stderr.take().map(read_capped_in_background);
    let deadline = Instant::now() + NODE_TIME_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if status.is_none() {
        return Err(ConfigError::evaluation(
            format!(
                "JavaScript config {} did not finish within {} s",
                path.display(),
                NODE_TIME_LIMIT.as_secs()
            ),
            "Check that the module and its default export finish: a config should only build and return an object.",
        ));
    }

    let Some(result) = stdout.rfind(RESULT_MARKER).and_then(|at| {
        serde_json::from_str::<Value>(stdout[at + RESULT_MARKER.len()..].trim()).ok()
    }) else {
        let detail = stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("node exited without a result");
        return Err(ConfigError::evaluation(
            format!(
                "JavaScript config {} could not be evaluated: {}",
                path.display(),
                detail.trim()
            ),
            format!("Run `node {}` to see the full error.", path.display()),
        ));
    };

    let detail = result
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match result.get("error").and_then(Value::as_str) {
        None => Ok(result.get("ok").cloned().unwrap_or(Value::Null)),
        Some("no-default") => Err(ConfigError::evaluation(
            format!("Config module {shown} must export a default config object or function"),
            "Add `export default { ... }` (ES module) or `module.exports = { ... }` (CommonJS) to the file.",
        )),
        Some("functions") => Err(ConfigError::evaluation(
            format!(
                "Config module {shown} holds JavaScript functions, which rollbridge cannot use: {detail}"
            ),
            "Replace each function with a shell command string or a {plugin: ...} hook value, or convert the config to Lua, where hooks can be functions.",
        )),
        Some("cycle") => Err(ConfigError::evaluation(
            format!("Config module {shown} refers to itself at {detail}"),
            "Build the config as a plain tree of objects; an object must not contain itself.",
        )),
        Some("call") => Err(ConfigError::evaluation(
            format!("The default export of config module {shown} threw an error: {detail}"),
            "Fix the error in the exported function; it must return (or resolve to) the config object.",
        )),
        Some(_) => Err(ConfigError::evaluation(
            format!(
                "JavaScript config {} could not be imported: {detail}",
                path.display()
            ),
            format!("Run `node {}` to see the full error.", path.display()),
        )),
    }
}

fn read_capped_in_background<R: Read + Send + 'static>(
    reader: R,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut bytes = Vec::new();
        let _ = (&mut reader).take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
        // Keep draining so node never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
