//! `doctor --release-path`: would this release start? Renders every process the
//! way a deploy would and checks the release directory and working directories.

use super::common::LoadedConfig;
use super::doctor::Check;
use crate::config::template::{TemplateContext, render_process};
use std::path::{Path, PathBuf};

/// The three release checks: `release path`, `process templates`, and
/// `process working directories`.
pub fn release_checks(
    config: &LoadedConfig,
    release_path: &Path,
    release_id: Option<&str>,
    revision: Option<&str>,
) -> Vec<Check> {
    let config = &config.config;
    let release_path =
        std::path::absolute(release_path).unwrap_or_else(|_| release_path.to_path_buf());
    let release_text = release_path.to_string_lossy().into_owned();
    let release_id = release_id
        .filter(|id| !id.is_empty())
        .or(revision.filter(|r| !r.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            release_path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let revision = revision
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| release_id.clone());

    // Each ported process stands in with the first port of its range (0 for an
    // ephemeral port); the real ports are only known at deploy time.
    let ports: Vec<(String, u16)> = config
        .processes
        .iter()
        .filter_map(|process| process.port.map(|range| (process.id.clone(), range.from)))
        .collect();

    let mut template_errors = Vec::new();
    let mut working_dirs: Vec<(String, PathBuf)> = Vec::new();
    for process in &config.processes {
        let mut ctx = TemplateContext::from_config(config);
        ctx.release_id = release_id.clone();
        ctx.release_path = release_text.clone();
        ctx.revision = revision.clone();
        ctx.process_id = process.id.clone();
        ctx.replica_index = 0;
        ctx.replica_count = process.replicas;
        ctx.port = process.port.map(|range| range.from);
        ctx.ports = ports.clone();
        match render_process(process, &ctx) {
            Ok(rendered) => {
                let cwd = match rendered.cwd {
                    Some(cwd) => release_path.join(cwd),
                    None => release_path.clone(),
                };
                working_dirs.push((process.id.clone(), cwd));
            }
            Err(error) => template_errors.push(format!("{}: {error}", process.id)),
        }
    }

    let mut checks = Vec::new();
    checks.push(if release_path.is_dir() {
        Check::pass("release path", format!("{release_text} exists"))
    } else {
        Check::fail(
            "release path",
            format!("{release_text} is missing or not a directory"),
        )
    });
    checks.push(if template_errors.is_empty() {
        Check::pass(
            "process templates",
            format!(
                "all {} process command/cwd/env templates resolve",
                config.processes.len()
            ),
        )
    } else {
        Check::fail(
            "process templates",
            format!("unresolved templates — {}", template_errors.join("; ")),
        )
    });
    let missing: Vec<String> = working_dirs
        .iter()
        .filter(|(_, cwd)| !cwd.is_dir())
        .map(|(id, cwd)| format!("{id} ({})", cwd.display()))
        .collect();
    checks.push(if missing.is_empty() {
        let count = working_dirs.len();
        Check::pass(
            "process working directories",
            if count == 1 {
                "all 1 process working directory exists".to_string()
            } else {
                format!("all {count} process working directories exist")
            },
        )
    } else {
        let label = if missing.len() == 1 {
            "missing working directory"
        } else {
            "missing working directories"
        };
        Check::fail(
            "process working directories",
            format!("{label}: {}", missing.join(", ")),
        )
    });
    checks
}
