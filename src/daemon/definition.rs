//! Turning config entries into process definitions for one release: templates
//! rendered, `ROLLBRIDGE_*` injected, instance ids assigned, the log file path
//! resolved.

use super::errors::DefinitionError;
use super::release::Release;
use crate::config::model::{Config, ProcessConfig};
use crate::config::template::{self, TemplateContext};
use crate::observability::ProcessLogTarget;
use crate::process::ProcessDefinition;
use std::path::PathBuf;

/// What a definition needs to know about the release it belongs to.
#[derive(Debug, Clone)]
pub struct ReleaseIdentity<'a> {
    pub id: &'a str,
    pub path: &'a str,
    pub revision: &'a str,
    pub ports: &'a [(String, u16)],
}

impl<'a> ReleaseIdentity<'a> {
    pub fn of(release: &'a Release) -> ReleaseIdentity<'a> {
        ReleaseIdentity {
            id: &release.id,
            path: &release.path,
            revision: &release.revision,
            ports: &release.ports,
        }
    }
}

/// The instance id of replica `index` of `count`: the base id, or `id#index`.
pub fn instance_id(base_id: &str, index: u32, count: u32) -> String {
    if count > 1 {
        format!("{base_id}#{index}")
    } else {
        base_id.to_string()
    }
}

/// The template error, plus why when it names a variable the daemon does have
/// but cannot use as text.
fn explain_template_error(error: template::TemplateError) -> DefinitionError {
    let non_utf8 = match &error {
        template::TemplateError::Missing { placeholder } => placeholder
            .trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
            .strip_prefix("env.")
            .filter(|name| crate::util::env::non_utf8_names().iter().any(|n| n == name))
            .map(str::to_string),
        _ => None,
    };
    DefinitionError {
        source: error,
        non_utf8,
    }
}

/// Renders one instance's definition.
pub fn build(
    config: &Config,
    process: &ProcessConfig,
    release: &ReleaseIdentity<'_>,
    replica_index: u32,
) -> Result<ProcessDefinition, DefinitionError> {
    let port = release
        .ports
        .iter()
        .find(|(id, _)| *id == process.id)
        .map(|(_, port)| *port);
    let context = TemplateContext {
        application: config.application.clone(),
        release_id: release.id.to_string(),
        release_path: release.path.to_string(),
        revision: release.revision.to_string(),
        process_id: process.id.clone(),
        replica_index,
        replica_count: process.replicas,
        port,
        ports: release.ports.to_vec(),
        proxy_host: config.proxy.host.clone(),
        proxy_port: config.proxy.port,
        proxy_upstream_host: config.proxy.upstream_host.clone(),
        env: template::process_env(),
    };
    let rendered = template::render_process(process, &context).map_err(explain_template_error)?;
    let log_file = process
        .log_file
        .as_ref()
        .zip(rendered.log_file)
        .map(|(settings, path)| ProcessLogTarget {
            path: settings.base_dir.join(path),
            format: settings.format,
            rotation: settings.rotation,
            keep: settings.keep,
        });
    let mut env = template::injected_env(&context);
    for (key, value) in rendered.env {
        env.retain(|(existing, _)| *existing != key);
        env.push((key, value));
    }
    Ok(ProcessDefinition {
        instance_id: instance_id(&process.id, replica_index, process.replicas),
        base_id: process.id.clone(),
        release_id: release.id.to_string(),
        release_path: release.path.to_string(),
        revision: release.revision.to_string(),
        command: rendered.command,
        cwd: PathBuf::from(rendered.cwd.unwrap_or_else(|| release.path.to_string())),
        env,
        port,
        replica_index,
        replica_count: process.replicas,
        config: process.clone(),
        log_file,
    })
}
