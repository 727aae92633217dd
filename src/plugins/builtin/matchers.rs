//! Built-in legacy-process matchers: `cmdline` (every string of `includes` occurs in
//! the command line) and `screen` (the `SCREEN -dmS <name>` process of a named
//! screen session).

use crate::plugins::{HookError, HookFuture, LegacyProcess, MatcherPlugin};
use serde_json::{Map, Value};
use tokio::time::Instant;

fn string_list(options: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("every entry of `{key}` must be a string"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be a list of strings")),
    }
}

/// Matches when the command line contains every `includes` string (case
/// sensitive). An empty list matches nothing, so a mistake cannot select every
/// process on the host.
pub struct CmdlineMatcher {
    includes: Result<Vec<String>, String>,
}

impl CmdlineMatcher {
    pub fn from_options(options: &Map<String, Value>) -> CmdlineMatcher {
        CmdlineMatcher {
            includes: string_list(options, "includes")
                .map(|list| list.into_iter().filter(|s| !s.is_empty()).collect()),
        }
    }

    pub fn is_match(&self, cmdline: &str) -> Result<bool, String> {
        let includes = self
            .includes
            .as_ref()
            .map_err(|e| format!("the cmdline matcher option {e}"))?;
        Ok(!includes.is_empty() && includes.iter().all(|s| cmdline.contains(s.as_str())))
    }
}

impl MatcherPlugin for CmdlineMatcher {
    fn name(&self) -> &str {
        "cmdline"
    }

    fn matches(&self, process: LegacyProcess, _deadline: Instant) -> HookFuture<bool> {
        let verdict = self.is_match(&process.cmdline).map_err(HookError::Failed);
        Box::pin(async move { verdict })
    }
}

/// Matches the detached `SCREEN -dmS <name>` process of the sessions named by the
/// `name` option (a string or a list). The name must be followed by the end of the
/// command line or a space, so `app` does not also match a session `app2`.
pub struct ScreenMatcher {
    names: Result<Vec<String>, String>,
}

impl ScreenMatcher {
    pub fn from_options(options: &Map<String, Value>) -> ScreenMatcher {
        let mut names = string_list(options, "name");
        if let (Ok(list), Ok(more)) = (&mut names, string_list(options, "names")) {
            list.extend(more);
        }
        ScreenMatcher {
            names: names.map(|list| list.into_iter().filter(|s| !s.is_empty()).collect()),
        }
    }

    pub fn is_match(&self, cmdline: &str) -> Result<bool, String> {
        let names = self
            .names
            .as_ref()
            .map_err(|e| format!("the screen matcher option {e}"))?;
        Ok(names.iter().any(|name| {
            let marker = format!("SCREEN -dmS {name}");
            cmdline.match_indices(&marker).any(|(at, _)| {
                cmdline[at + marker.len()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
            })
        }))
    }
}

impl MatcherPlugin for ScreenMatcher {
    fn name(&self) -> &str {
        "screen"
    }

    fn matches(&self, process: LegacyProcess, _deadline: Instant) -> HookFuture<bool> {
        let verdict = self.is_match(&process.cmdline).map_err(HookError::Failed);
        Box::pin(async move { verdict })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn cmdline_needs_every_substring() {
        let m = CmdlineMatcher::from_options(&options(json!({"includes": ["node", "server.js"]})));
        assert_eq!(m.is_match("/usr/bin/node /srv/app/server.js"), Ok(true));
        assert_eq!(m.is_match("/usr/bin/node /srv/app/worker.js"), Ok(false));
        let empty = CmdlineMatcher::from_options(&options(json!({"includes": []})));
        assert_eq!(empty.is_match("anything"), Ok(false));
        let bad = CmdlineMatcher::from_options(&options(json!({"includes": [1]})));
        assert!(bad.is_match("x").is_err());
    }

    #[test]
    fn screen_matches_whole_session_names() {
        let m = ScreenMatcher::from_options(&options(json!({"name": "app"})));
        assert_eq!(m.is_match("SCREEN -dmS app node server.js"), Ok(true));
        assert_eq!(m.is_match("SCREEN -dmS app"), Ok(true));
        assert_eq!(m.is_match("SCREEN -dmS app2 node"), Ok(false));
        assert_eq!(m.is_match("screen -r app"), Ok(false));
        let many = ScreenMatcher::from_options(&options(json!({"name": ["a", "b"]})));
        assert_eq!(many.is_match("SCREEN -dmS b"), Ok(true));
    }
}
