//! `rollbridge deploy`: ask the daemon to start, health-check and switch to a release.

use super::common::{load_config, reply_text};
use super::ensure_daemon::{DaemonStartArgs, ensure};
use super::human::{replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release directory; a relative path is resolved against the current directory.
    #[arg(long = "release-path", value_name = "path", required = true)]
    pub release_path: PathBuf,
    /// Release id (default: the revision, else a UTC timestamp).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    /// Revision, e.g. a commit sha (default: the release id).
    #[arg(long = "revision", value_name = "sha")]
    pub revision: Option<String>,
    /// Watch the new release this long after the switch, rolling back on failure
    /// (overrides rollout.watchMs; 0 = no watch).
    #[arg(long = "watch-ms", value_name = "ms")]
    pub watch_ms: Option<u64>,
    /// Start the release as a canary with this share (1-99) of new requests.
    #[arg(long = "canary", value_name = "percent", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub canary: Option<u8>,
    /// Start the daemon first if none is running.
    #[arg(long = "ensure-daemon")]
    pub ensure_daemon: bool,
    #[command(flatten)]
    pub daemon: DaemonStartArgs,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
    #[command(flatten)]
    pub progress: super::human::progress::ProgressArg,
}

pub fn run(args: DeployArgs) -> CliResult {
    let release_path = absolute_release_path(&args.release_path)?;
    let start_timeout_ms = if args.ensure_daemon {
        Some(args.daemon.start_timeout_ms()?)
    } else {
        None
    };
    let config = load_config(&args.config)?;
    if let Some(timeout_ms) = start_timeout_ms {
        ensure(&config, &args.daemon, timeout_ms)?;
    }
    super::deploy_warnings::warn_before_deploy(&config, &release_path);
    let request = Request::Deploy {
        release_path,
        release_id: args.release_id,
        revision: args.revision,
        watch_ms: args.watch_ms,
        canary_percent: args.canary,
    };
    // A deploy waits for the health check and the traffic switch: no timeout.
    run_with_progress(
        &config,
        &request,
        &args.output,
        &args.progress,
        |reply| match reply
            .get("canaryReleaseId")
            .and_then(serde_json::Value::as_str)
        {
            Some(canary) => format!("canary {canary} opened"),
            None => format!("deployed {}", reply_text(reply, "activeReleaseId")),
        },
        replies::deployed,
    )
}

/// The release path as the daemon must see it. A relative path is resolved
/// against the CLI's working directory here, because the daemon's working
/// directory is usually somewhere else. An absolute path is sent unchanged.
pub fn absolute_release_path(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str().is_empty() {
        anyhow::bail!("--release-path must not be empty; pass the release directory");
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::path::absolute(path)
            .with_context(|| format!("cannot resolve --release-path {}", path.display()))?
    };
    absolute.into_os_string().into_string().map_err(|path| {
        anyhow::anyhow!("--release-path {path:?} is not valid UTF-8; rename the release directory")
    })
}
