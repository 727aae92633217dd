//! `rollbridge validate`: load a config and report every problem with a fix.

use super::{CliResult, ConfigArg};
use crate::config::error::Counted;
use crate::config::{self, Issue, ValidationReport};
use clap::Args;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs) -> CliResult {
    let cwd = std::env::current_dir()?;
    let path = match config::resolve_config_path(args.config.config.as_deref(), &cwd) {
        Ok(path) => path,
        Err(error) => {
            if args.json {
                let issue = Issue::new(error.to_string(), error.fix());
                print_json(&result_json(None, &[issue], None));
            } else {
                err(&error.to_string());
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = config::check_strictly(&path);
    if args.json {
        print_json(&report_json(&report, &path));
    } else {
        print_text(&report, &path);
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `{config, issues, path, valid}` with `config` = `{application, processes, proxy}`.
pub fn report_json(report: &ValidationReport, path: &Path) -> Value {
    let summary = report
        .config
        .as_ref()
        .filter(|_| report.is_valid())
        .map(|config| {
            json!({
                "application": config.application,
                "processes": config.processes.len(),
                "proxy": { "host": config.proxy.host, "port": config.proxy.port },
            })
        });
    result_json(summary, &report.issues, Some(path))
}

fn result_json(config: Option<Value>, issues: &[Issue], path: Option<&Path>) -> Value {
    let valid = config.is_some() && issues.is_empty();
    json!({
        "config": config,
        "issues": issues
            .iter()
            .map(|issue| json!({ "fix": issue.fix, "message": issue.message }))
            .collect::<Vec<_>>(),
        "path": path.map(|p| p.display().to_string()),
        "valid": valid,
    })
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    out(&text);
}

// Writes that ignore a closed pipe (`| head`), unlike `println!`, which panics.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn err(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn print_text(report: &ValidationReport, path: &Path) {
    match &report.config {
        Some(config) if report.is_valid() => out(&format!(
            "{} is valid: {}, proxy on {}:{}.",
            path.display(),
            Counted(config.processes.len(), "process", "processes"),
            config.proxy.host,
            config.proxy.port
        )),
        _ => {
            let mut text = format!(
                "Found {} in {}:\n",
                Counted(
                    report.issues.len(),
                    "configuration issue",
                    "configuration issues"
                ),
                path.display()
            );
            for (index, issue) in report.issues.iter().enumerate() {
                text.push_str(&format!(
                    "\n{}. {}\n   Fix: {}\n",
                    index + 1,
                    issue.message,
                    issue.fix
                ));
            }
            err(text.trim_end_matches('\n'));
        }
    }
}
