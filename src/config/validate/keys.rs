//! Unknown-key reports with a "did you mean" suggestion.

use crate::config::error::Issue;

/// The closest accepted key, if any is close enough to be a likely typo.
pub(crate) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lowered = key.to_ascii_lowercase();
    known
        .iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&lowered, &candidate.to_ascii_lowercase());
            (score, *candidate)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub(crate) fn unknown_key(path: &str, key: &str, known: &[&str]) -> Issue {
    let fix = match closest(key, known) {
        Some(suggestion) => {
            format!(
                "Did you mean \"{suggestion}\"? Rename the key, or remove it if it is not needed."
            )
        }
        None => format!(
            "Remove the key; the keys accepted here are: {}.",
            known.join(", ")
        ),
    };
    Issue::new(format!("{path} is not a known key"), fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let known = ["health", "command", "policy", "port"];
        assert_eq!(closest("helth", &known), Some("health"));
        assert_eq!(closest("comand", &known), Some("command"));
        assert_eq!(closest("Policy", &known), Some("policy"));
        assert_eq!(closest("zzzz", &known), None);
    }

    #[test]
    fn message_names_the_key_path() {
        let issue = unknown_key("processes[0].helth", "helth", &["health"]);
        assert_eq!(issue.message, "processes[0].helth is not a known key");
        assert!(issue.fix.starts_with("Did you mean \"health\"?"));
    }
}
