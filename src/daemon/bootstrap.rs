//! Daemon start options: a plain listener-only start, or a
//! known-release bootstrap that activates one exact release before the control
//! socket appears. The checks run before the config is read and before any
//! listener exists, so a bad invocation leaves nothing behind.

use super::errors::BootstrapError;
use std::path::{Component, Path, PathBuf};

/// How the daemon was asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartMode {
    /// Bind the proxy and the control socket and wait for deploys.
    ListenerOnly { config: Option<PathBuf> },
    /// Activate this release first; expose control only once it is healthy.
    Bootstrap(BootstrapRequest),
}

/// A validated known-release bootstrap (also carried by a live upgrade).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest {
    /// Absolute and normalized.
    pub config: PathBuf,
    /// Absolute and normalized, names a directory.
    pub release_path: String,
    pub release_id: String,
    pub revision: String,
    /// `sha256:<64 lowercase hex>`, echoed in `status.bootstrap`.
    pub attestation: Option<String>,
    /// Replace a running daemon once this release is healthy.
    pub takeover_owner: bool,
}

/// The raw daemon flags.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub config: Option<PathBuf>,
    pub release_path: Option<PathBuf>,
    pub release_id: Option<String>,
    pub revision: Option<String>,
    pub boot_attestation: Option<String>,
    pub takeover_owner: bool,
}

/// Checks the flags in the documented order; the error is the message to print.
pub fn validate(options: &StartOptions) -> Result<StartMode, BootstrapError> {
    let any_tuple = options.release_path.is_some()
        || options.release_id.is_some()
        || options.revision.is_some();
    if options.boot_attestation.is_some() && !any_tuple {
        return Err(BootstrapError::AttestationWithoutTuple);
    }
    if !any_tuple {
        if options.takeover_owner {
            return Err(BootstrapError::TakeoverRequirements);
        }
        return Ok(StartMode::ListenerOnly {
            config: options.config.clone(),
        });
    }
    let (Some(config), Some(release_path), Some(release_id), Some(revision)) = (
        options.config.as_ref(),
        options.release_path.as_ref(),
        options.release_id.as_ref(),
        options.revision.as_ref(),
    ) else {
        return Err(BootstrapError::IncompleteTuple);
    };
    check_path("--config", config)?;
    check_path("--release-path", release_path)?;
    check_identifier("--release-id", release_id)?;
    check_identifier("--revision", revision)?;
    if let Some(attestation) = &options.boot_attestation {
        if !is_canonical_attestation(attestation) {
            return Err(BootstrapError::AttestationFormat);
        }
    }
    match std::fs::metadata(release_path) {
        Err(error) => {
            return Err(BootstrapError::ReleasePathInaccessible(error));
        }
        Ok(metadata) if !metadata.is_dir() => {
            return Err(BootstrapError::ReleasePathNotDirectory);
        }
        Ok(_) => {}
    }
    if options.takeover_owner && options.boot_attestation.is_none() {
        return Err(BootstrapError::TakeoverRequirements);
    }
    Ok(StartMode::Bootstrap(BootstrapRequest {
        config: config.clone(),
        release_path: release_path.to_string_lossy().into_owned(),
        release_id: release_id.clone(),
        revision: revision.clone(),
        attestation: options.boot_attestation.clone(),
        takeover_owner: options.takeover_owner,
    }))
}

fn check_path(flag: &'static str, path: &Path) -> Result<(), BootstrapError> {
    if !path.is_absolute() {
        return Err(BootstrapError::RelativePath { flag });
    }
    if !is_normalized(path) {
        return Err(BootstrapError::UnnormalizedPath { flag });
    }
    Ok(())
}

/// True when normalizing the path would not change it: no `.` or `..`
/// segments, no doubled or trailing slashes.
fn is_normalized(path: &Path) -> bool {
    let text = path.to_string_lossy();
    if text == "/" {
        return true;
    }
    if text.ends_with('/') || text.contains("//") {
        return false;
    }
    path.components()
        .all(|component| matches!(component, Component::RootDir | Component::Normal(_)))
        && !text
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`
fn check_identifier(flag: &'static str, value: &str) -> Result<(), BootstrapError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && value.len() <= 200 {
        Ok(())
    } else {
        Err(BootstrapError::UnsafeIdentifier { flag })
    }
}

/// `^sha256:[a-f0-9]{64}$`
pub fn is_canonical_attestation(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(dir: &Path) -> StartOptions {
        StartOptions {
            config: Some(dir.join("rollbridge.json")),
            release_path: Some(dir.to_path_buf()),
            release_id: Some("release-42".into()),
            revision: Some("abc123".into()),
            boot_attestation: None,
            takeover_owner: false,
        }
    }

    fn error(options: &StartOptions) -> String {
        validate(options).unwrap_err().to_string()
    }

    #[test]
    fn listener_only_without_tuple() {
        let options = StartOptions {
            config: Some("rel.json".into()),
            ..StartOptions::default()
        };
        assert_eq!(
            validate(&options).unwrap(),
            StartMode::ListenerOnly {
                config: Some("rel.json".into())
            }
        );
    }

    #[test]
    fn each_rule_has_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let good = tuple(root);
        assert!(matches!(validate(&good).unwrap(), StartMode::Bootstrap(_)));

        let attestation_only = StartOptions {
            boot_attestation: Some(format!("sha256:{}", "a".repeat(64))),
            ..StartOptions::default()
        };
        assert!(error(&attestation_only).contains("accepted only with"));

        let partial = StartOptions {
            revision: None,
            ..good.clone()
        };
        assert!(error(&partial).contains("must be provided together"));

        let relative_config = StartOptions {
            config: Some("rollbridge.json".into()),
            ..good.clone()
        };
        assert!(error(&relative_config).contains("--config must be an absolute path"));

        let relative_release = StartOptions {
            release_path: Some("release".into()),
            ..good.clone()
        };
        assert!(error(&relative_release).contains("--release-path must be an absolute path"));

        for unnormalized in [
            format!("{}/child/..", root.display()),
            format!("{}/./x", root.display()),
            format!("{}//x", root.display()),
            format!("{}/", root.display()),
        ] {
            let options = StartOptions {
                release_path: Some(unnormalized.clone().into()),
                ..good.clone()
            };
            assert!(
                error(&options).contains("--release-path must be normalized"),
                "{unnormalized}"
            );
        }

        let missing = StartOptions {
            release_path: Some(root.join("missing")),
            ..good.clone()
        };
        assert!(error(&missing).contains("--release-path is not accessible: ENOENT"));

        let file = root.join("file");
        std::fs::write(&file, "").unwrap();
        let not_dir = StartOptions {
            release_path: Some(file),
            ..good.clone()
        };
        assert!(error(&not_dir).contains("must name a directory"));

        let bad_id = StartOptions {
            release_id: Some("unsafe id".into()),
            ..good.clone()
        };
        assert!(error(&bad_id).contains("--release-id must be a non-empty safe identifier"));
        let bad_revision = StartOptions {
            revision: Some("-rev".into()),
            ..good.clone()
        };
        assert!(error(&bad_revision).contains("--revision must be"));
        let long_id = StartOptions {
            release_id: Some("a".repeat(201)),
            ..good.clone()
        };
        assert!(error(&long_id).contains("--release-id"));

        for attestation in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
        ] {
            let options = StartOptions {
                boot_attestation: Some(attestation),
                ..good.clone()
            };
            assert!(error(&options).contains("--boot-attestation must use the canonical"));
        }

        let takeover = StartOptions {
            takeover_owner: true,
            ..good.clone()
        };
        assert!(error(&takeover).contains("--takeover-owner requires"));
    }
}
