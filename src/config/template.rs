//! `{{placeholder}}` rendering for `command`, `cwd`, `env` values and the
//! `logFile` path, and the `ROLLBRIDGE_*` variables every managed process gets.
//! Pure functions: the daemon builds a [`TemplateContext`] when it starts a
//! process.
//!
//! Syntax: `{{`, optional whitespace, a key of `[A-Za-z0-9_.-]+`, optional
//! whitespace, `}}`. Anything else (such as `{{a b}}`) is left as written.

use super::model::{Config, ProcessConfig};
use std::collections::HashMap;

/// The values placeholders can refer to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateContext {
    pub application: String,
    pub release_id: String,
    /// The release path exactly as given to `deploy`.
    pub release_path: String,
    /// The revision; when empty, the release id stands in for it.
    pub revision: String,
    /// Base process id (without `#n`).
    pub process_id: String,
    /// 0-based replica index (0 for single processes).
    pub replica_index: u32,
    /// Replica count (1 for single processes).
    pub replica_count: u32,
    /// This process's allocated port, if it has a `port`.
    pub port: Option<u16>,
    /// Allocated ports of the release's ported processes (persistent services
    /// included), in config order.
    pub ports: Vec<(String, u16)>,
    pub proxy_host: String,
    /// The configured `proxy.port` (0 stays 0 even when the bound port differs).
    pub proxy_port: u16,
    pub proxy_upstream_host: String,
    /// The daemon's environment when rendering happens.
    pub env: HashMap<String, String>,
}

impl TemplateContext {
    /// A context with the config-wide values filled in (application and proxy) and
    /// the current process environment; the caller sets the release and process
    /// fields.
    pub fn from_config(config: &Config) -> TemplateContext {
        TemplateContext {
            application: config.application.clone(),
            replica_count: 1,
            proxy_host: config.proxy.host.clone(),
            proxy_port: config.proxy.port,
            proxy_upstream_host: config.proxy.upstream_host.clone(),
            env: process_env(),
            ..TemplateContext::default()
        }
    }

    /// The revision, or the release id when the revision is empty.
    pub fn effective_revision(&self) -> &str {
        if self.revision.is_empty() {
            &self.release_id
        } else {
            &self.revision
        }
    }
}

/// The environment of this process (variables that are not UTF-8 are skipped).
pub fn process_env() -> HashMap<String, String> {
    crate::util::env::utf8_vars().collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The placeholder names nothing, or a value that is not set (`{{port}}` on a
    /// process without a port, an unset `{{env.X}}`, an unknown `{{ports.x}}`).
    #[error("Missing template value for {placeholder}")]
    Missing {
        /// The placeholder exactly as written, braces and spaces included.
        placeholder: String,
    },
    /// The placeholder names a group (`{{ports}}`, `{{proxy}}`, `{{env}}`) rather
    /// than one value.
    #[error(
        "Template placeholder {placeholder} names a group of values, not a single value; use {choices}"
    )]
    NotAValue {
        placeholder: String,
        choices: String,
    },
}

/// A rendered process definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedProcess {
    pub command: String,
    /// `None`: run in the release path.
    pub cwd: Option<String>,
    /// The injected `ROLLBRIDGE_*` variables, then the rendered `env` values; a
    /// name appears once, with its last value. The daemon's own environment comes
    /// before all of these.
    pub env: Vec<(String, String)>,
    /// The rendered `logFile` path, not yet resolved against the config's folder.
    pub log_file: Option<String>,
}

/// Replaces every placeholder in `template`; the first that cannot be resolved
/// fails the whole rendering.
pub fn render(template: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    let mut output = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        output.push_str(&rest[..start]);
        let candidate = &rest[start..];
        match match_placeholder(candidate) {
            Some((length, key)) => {
                output.push_str(&lookup(key, &candidate[..length], ctx)?);
                rest = &candidate[length..];
            }
            None => {
                // Not a placeholder here; the next one may start one brace later.
                output.push('{');
                rest = &candidate[1..];
            }
        }
    }
    output.push_str(rest);
    Ok(output)
}

/// If `text` starts with a placeholder, its length in bytes and its key.
fn match_placeholder(text: &str) -> Option<(usize, &str)> {
    let inner = text.strip_prefix("{{")?;
    let key_start = inner.len() - inner.trim_start().len();
    let after_space = &inner[key_start..];
    let key_length = after_space
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    if key_length == 0 {
        return None;
    }
    let key = &after_space[..key_length];
    let after_key = &after_space[key_length..];
    let closing = after_key.trim_start();
    if !closing.starts_with("}}") {
        return None;
    }
    let consumed = text.len() - closing.len() + 2;
    Some((consumed, key))
}

fn lookup(key: &str, placeholder: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    let missing = || TemplateError::Missing {
        placeholder: placeholder.to_string(),
    };
    let group = |choices: String| TemplateError::NotAValue {
        placeholder: placeholder.to_string(),
        choices,
    };
    let (head, tail) = match key.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (key, None),
    };
    let scalar = |value: String| match tail {
        None => Ok(value),
        Some(_) => Err(missing()),
    };
    match head {
        "application" => scalar(ctx.application.clone()),
        "releaseId" => scalar(ctx.release_id.clone()),
        "releasePath" => scalar(ctx.release_path.clone()),
        "revision" => scalar(ctx.effective_revision().to_string()),
        "processId" => scalar(ctx.process_id.clone()),
        "replicaIndex" => scalar(ctx.replica_index.to_string()),
        "replicaCount" => scalar(ctx.replica_count.to_string()),
        "port" => match ctx.port {
            Some(port) => scalar(port.to_string()),
            None => Err(missing()),
        },
        // A process id may itself contain dots, so the rest of the key is the id.
        "ports" => match tail {
            None if ctx.ports.is_empty() => Err(group(
                "{{ports.<process id>}}; no process in this release has a port".to_string(),
            )),
            None => Err(group(format!(
                "one of: {}",
                ctx.ports
                    .iter()
                    .map(|(id, _)| format!("{{{{ports.{id}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(id) => ctx
                .ports
                .iter()
                .find(|(process, _)| process == id)
                .map(|(_, port)| port.to_string())
                .ok_or_else(missing),
        },
        "proxy" => match tail {
            None => Err(group(
                "one of: {{proxy.host}}, {{proxy.port}}, {{proxy.upstreamHost}}".to_string(),
            )),
            Some("host") => Ok(ctx.proxy_host.clone()),
            Some("port") => Ok(ctx.proxy_port.to_string()),
            Some("upstreamHost") => Ok(ctx.proxy_upstream_host.clone()),
            Some(_) => Err(missing()),
        },
        "env" => match tail {
            None => Err(group("{{env.<NAME>}} for one variable".to_string())),
            Some(name) => ctx.env.get(name).cloned().ok_or_else(missing),
        },
        _ => Err(missing()),
    }
}

/// `background-jobs-main` → `BACKGROUND_JOBS_MAIN`: every run of characters other
/// than ASCII letters and digits becomes one `_`, then upper case.
pub fn env_id(process_id: &str) -> String {
    let mut id = String::with_capacity(process_id.len());
    let mut in_run = false;
    for c in process_id.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            id.push('_');
            in_run = true;
        }
    }
    id
}

/// The `ROLLBRIDGE_*` variables of a managed process (`ROLLBRIDGE_PID` is for
/// hooks and not included).
pub fn injected_env(ctx: &TemplateContext) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "ROLLBRIDGE_APPLICATION".to_string(),
            ctx.application.clone(),
        ),
        ("ROLLBRIDGE_PROCESS_ID".to_string(), ctx.process_id.clone()),
        ("ROLLBRIDGE_RELEASE_ID".to_string(), ctx.release_id.clone()),
        (
            "ROLLBRIDGE_RELEASE_PATH".to_string(),
            ctx.release_path.clone(),
        ),
        (
            "ROLLBRIDGE_REPLICA_COUNT".to_string(),
            ctx.replica_count.to_string(),
        ),
        (
            "ROLLBRIDGE_REPLICA_INDEX".to_string(),
            ctx.replica_index.to_string(),
        ),
        (
            "ROLLBRIDGE_REVISION".to_string(),
            ctx.effective_revision().to_string(),
        ),
    ];
    if let Some(port) = ctx.port {
        env.push(("ROLLBRIDGE_PORT".to_string(), port.to_string()));
    }
    for (id, port) in &ctx.ports {
        set(
            &mut env,
            format!("ROLLBRIDGE_{}_PORT", env_id(id)),
            port.to_string(),
        );
    }
    env
}

/// Sets `name`, dropping an earlier entry of the same name (the later one wins).
fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    env.retain(|(existing, _)| *existing != name);
    env.push((name, value));
}

/// Renders a process definition: its command, cwd and env values (on top of the
/// injected variables) and its log file path.
pub fn render_process(
    process: &ProcessConfig,
    ctx: &TemplateContext,
) -> Result<RenderedProcess, TemplateError> {
    let command = render(&process.command, ctx)?;
    let cwd = process
        .cwd
        .as_deref()
        .map(|cwd| render(cwd, ctx))
        .transpose()?;
    let mut env = injected_env(ctx);
    for (name, value) in &process.env {
        let value = render(value, ctx)?;
        set(&mut env, name.clone(), value);
    }
    let log_file = process
        .log_file
        .as_ref()
        .map(|log| render(&log.path, ctx))
        .transpose()?;
    Ok(RenderedProcess {
        command,
        cwd,
        env,
        log_file,
    })
}

#[cfg(test)]
mod tests;

/// The placeholders of every template of a config that can never be filled in,
/// whatever the release and environment: unknown names such as `{{prot}}`,
/// `{{ports.x}}` for a process without a port, `{{port}}` on a process without
/// one. `validate` reports them; `{{env.X}}` depends on the daemon's
/// environment and is left to `doctor --release-path`.
pub fn unresolvable_placeholders(config: &Config) -> Vec<crate::config::Issue> {
    let with_port: Vec<&str> = config
        .processes
        .iter()
        .filter(|process| process.port.is_some())
        .map(|process| process.id.as_str())
        .collect();
    let mut issues = Vec::new();
    for (index, process) in config.processes.iter().enumerate() {
        let templates = std::iter::once(("command".to_string(), process.command.as_str()))
            .chain(process.cwd.as_deref().map(|cwd| ("cwd".to_string(), cwd)))
            .chain(
                process
                    .env
                    .iter()
                    .map(|(name, value)| (format!("env.{name}"), value.as_str())),
            )
            .chain(
                process
                    .log_file
                    .as_ref()
                    .map(|log| ("logFile.path".to_string(), log.path.as_str())),
            );
        for (key, template) in templates {
            for placeholder in placeholders(template) {
                let reason = match never_resolves(placeholder.1, process.port.is_some(), &with_port)
                {
                    Some(reason) => reason,
                    None => continue,
                };
                issues.push(crate::config::Issue::new(
                    format!(
                        "processes[{index}].{key} uses {}, which {}",
                        placeholder.0, reason.0
                    ),
                    reason.1,
                ));
            }
        }
    }
    issues
}

/// `(placeholder as written, key)` of every placeholder in `template`.
fn placeholders(template: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let candidate = &rest[start..];
        match match_placeholder(candidate) {
            Some((length, key)) => {
                found.push((&candidate[..length], key));
                rest = &candidate[length..];
            }
            None => rest = &candidate[1..],
        }
    }
    found
}

/// Placeholders that stand for one value of the release or process.
const SCALAR_PLACEHOLDERS: &[&str] = &[
    "application",
    "releaseId",
    "releasePath",
    "revision",
    "processId",
    "replicaIndex",
    "replicaCount",
];

/// The other placeholder names, for suggestions and the list in fixes.
const OTHER_PLACEHOLDERS: &[&str] = &[
    "port",
    "ports.<id>",
    "proxy.host",
    "proxy.port",
    "proxy.upstreamHost",
    "env.<NAME>",
];

/// Why `key` can never be filled in (what the message says, the fix), or `None`.
fn never_resolves(key: &str, has_port: bool, with_port: &[&str]) -> Option<(String, String)> {
    let known: Vec<&str> = SCALAR_PLACEHOLDERS
        .iter()
        .chain(OTHER_PLACEHOLDERS)
        .copied()
        .collect();
    let (head, tail) = match key.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (key, None),
    };
    match (head, tail) {
        (name, None) if SCALAR_PLACEHOLDERS.contains(&name) => None,
        ("port", None) if has_port => None,
        ("port", None) => Some((
            "needs a port, and this process has none".to_string(),
            "Give the process a port (or a range), or use {{ports.<id>}} for another process's port."
                .to_string(),
        )),
        ("ports", Some(id)) if with_port.contains(&id) => None,
        ("ports", _) => Some((
            "names no process with a port".to_string(),
            if with_port.is_empty() {
                "No process of this config has a port; give the one you mean a port.".to_string()
            } else {
                format!(
                    "Use one of: {}.",
                    with_port
                        .iter()
                        .map(|id| format!("{{{{ports.{id}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        )),
        ("proxy", Some("host" | "port" | "upstreamHost")) => None,
        ("env", Some(_)) => None,
        _ => {
            let hint = match crate::config::validate::closest(key, &known) {
                Some(name) => format!("Did you mean {{{{{name}}}}}? "),
                None => String::new(),
            };
            let listed: Vec<String> = known.iter().map(|name| format!("{{{{{name}}}}}")).collect();
            Some((
                "is not a placeholder rollbridge knows".to_string(),
                format!("{hint}The placeholders are {}.", listed.join(", ")),
            ))
        }
    }
}
