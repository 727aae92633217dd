//! Errors of config loading and the issue type shared by `load`, `check` and
//! `validate`.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config: what is wrong (`message`, stable text that scripts
/// may match) and how to fix it (`fix`, prose for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub message: String,
    pub fix: String,
}

impl Issue {
    pub fn new(message: impl Into<String>, fix: impl Into<String>) -> Issue {
        Issue {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// No `--config` and none of the default file names exists.
    #[error(
        "No config file found in {}. Pass --config <path> or add one of: rollbridge.lua, rollbridge.json, rollbridge.js.",
        cwd.display()
    )]
    NotFound { cwd: PathBuf },

    /// The file could not be read (missing, a directory, too large, not UTF-8, ...).
    #[error("Cannot read config file {}: {reason}", path.display())]
    Unreadable {
        path: PathBuf,
        reason: String,
        fix: String,
    },

    /// The extension does not name a supported format.
    #[error(
        "Unsupported config file type for {}: expected a .lua, .json, .js, .mjs or .cjs file",
        path.display()
    )]
    UnknownFormat { path: PathBuf },

    /// The file was read but could not be evaluated or parsed: a syntax error, a
    /// runtime error, a time or memory limit, a missing default export, ...
    #[error("{message}")]
    Evaluation { message: String, fix: String },

    /// The config evaluated, but validation found issues.
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<Issue>),
}

fn invalid_message(issues: &[Issue]) -> String {
    let mut text = String::from("Invalid Rollbridge config:");
    for issue in issues {
        text.push_str("\n  - ");
        text.push_str(&issue.message);
    }
    text
}

impl ConfigError {
    /// A hint for the person running rollbridge, shown as `Fix:` by `validate`.
    pub fn fix(&self) -> String {
        match self {
            ConfigError::NotFound { .. } => {
                "Pass --config <path>, or create rollbridge.lua, rollbridge.json or rollbridge.js in this directory.".to_string()
            }
            ConfigError::Unreadable { fix, .. } | ConfigError::Evaluation { fix, .. } => {
                fix.clone()
            }
            ConfigError::UnknownFormat { .. } => {
                "Rename the file so its extension says how to read it: .lua for a Lua config, .json for JSON, or .js/.mjs/.cjs for a legacy JavaScript module.".to_string()
            }
            ConfigError::Invalid(issues) => issues
                .first()
                .map(|issue| issue.fix.clone())
                .unwrap_or_default(),
        }
    }

    /// The issues this error stands for: the validation issues themselves, or one
    /// issue describing a load failure.
    pub fn into_issues(self) -> Vec<Issue> {
        match self {
            ConfigError::Invalid(issues) => issues,
            other => {
                let fix = other.fix();
                vec![Issue::new(other.to_string(), fix)]
            }
        }
    }

    pub(crate) fn evaluation(message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError::Evaluation {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Writes `1 process` / `2 processes`.
pub struct Counted<'a>(pub usize, pub &'a str, pub &'a str);

impl fmt::Display for Counted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.0 == 1 { self.1 } else { self.2 };
        write!(f, "{} {}", self.0, word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_one_line_per_issue() {
        let error = ConfigError::Invalid(vec![
            Issue::new("a is bad", "fix a"),
            Issue::new("b is bad", "fix b"),
        ]);
        assert_eq!(
            error.to_string(),
            "Invalid Rollbridge config:\n  - a is bad\n  - b is bad"
        );
    }

    #[test]
    fn not_found_names_every_default_file() {
        let error = ConfigError::NotFound {
            cwd: PathBuf::from("/srv/app"),
        };
        assert_eq!(
            error.to_string(),
            "No config file found in /srv/app. Pass --config <path> or add one of: rollbridge.lua, rollbridge.json, rollbridge.js."
        );
    }
}
