//! Issue paths as a Lua config's author counts. Messages name settings with
//! 0-based list positions (`processes[0].port`, stable text shared by every
//! format); in a Lua file the same entry is `processes[1]`. For Lua configs the
//! fix gets the Lua path and, for a process, the line where its `id` is written.

use super::error::Issue;
use serde_json::Value;

/// Adds the 1-based path (and the process's line, when it can be found) to the
/// fix of every issue whose message names a list position.
pub(crate) fn locate(issues: &mut [Issue], file_name: &str, source: &str, value: &Value) {
    for issue in issues {
        let Some(path) = indexed_path(&issue.message) else {
            continue;
        };
        let lua_path = one_based(path);
        let line = process_index(path)
            .and_then(|index| value.pointer(&format!("/processes/{index}/id"))?.as_str())
            .and_then(|id| id_line(source, id));
        let place = match line {
            Some(line) => format!("{lua_path}, the process on line {line} of {file_name}"),
            None => format!("{lua_path} in {file_name}"),
        };
        issue.fix = format!(
            "{} (Lua counts list entries from 1: this is {place}.)",
            issue.fix
        );
    }
}

/// The first word of `message` that is a key path with a list position.
fn indexed_path(message: &str) -> Option<&str> {
    message
        .split_whitespace()
        .map(|word| word.trim_end_matches([',', '.', ':', ';']))
        .find(|word| {
            word.split('[')
                .skip(1)
                .any(|rest| rest.split(']').next().is_some_and(is_index))
        })
}

fn is_index(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `processes[0].port` → `processes[1].port`.
fn one_based(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let close = rest.find(']').unwrap_or(rest.len());
        match rest[..close].parse::<u64>() {
            Ok(index) => out.push_str(&(index + 1).to_string()),
            Err(_) => out.push_str(&rest[..close]),
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

fn process_index(path: &str) -> Option<usize> {
    path.strip_prefix("processes[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

/// The 1-based line of the first `id = "<id>"` (either quote, any spacing).
fn id_line(source: &str, id: &str) -> Option<usize> {
    source
        .lines()
        .position(|line| {
            line.match_indices("id").any(|(at, _)| {
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return false;
                }
                let after = line[at + 2..].trim_start();
                let Some(value) = after.strip_prefix('=') else {
                    return false;
                };
                let value = value.trim_start();
                [format!("\"{id}\""), format!("'{id}'")]
                    .iter()
                    .any(|quoted| value.starts_with(quoted.as_str()))
            })
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fixes_get_the_lua_path_and_the_process_line() {
        let source = "return {\n  processes = {\n    { id = \"web\", command = \"x\" },\n    { command = \"y\", id='jobs' },\n  },\n}\n";
        let value = json!({"processes": [{"id": "web"}, {"id": "jobs"}]});
        let mut issues = vec![
            Issue::new("processes[1].replicas must be a positive integer", "Use 1."),
            Issue::new(
                "legacyTakeover.screens[0] must be a non-empty string",
                "Name it.",
            ),
            Issue::new("proxy.port must be a number", "Use 8182."),
        ];
        locate(&mut issues, "rollbridge.lua", source, &value);
        assert_eq!(
            issues[0].fix,
            "Use 1. (Lua counts list entries from 1: this is processes[2].replicas, the process on line 4 of rollbridge.lua.)"
        );
        assert_eq!(
            issues[1].fix,
            "Name it. (Lua counts list entries from 1: this is legacyTakeover.screens[1] in rollbridge.lua.)"
        );
        assert_eq!(issues[2].fix, "Use 8182.");
    }

    #[test]
    fn ids_are_matched_as_whole_keys() {
        assert_eq!(id_line("pid = \"web\"\n  id = \"web\"", "web"), Some(2));
        assert_eq!(id_line("id = \"webby\"", "web"), None);
    }
}
