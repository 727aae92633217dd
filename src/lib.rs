//! rollbridge: a zero-downtime deploy supervisor for one host.
//!
//! The crate is split by responsibility; each folder is one part of the system:
//! - [`cli`]: the `rollbridge` command line (one file per command);
//! - [`config`]: loading (Lua / JSON / legacy JS), the typed model, validation, templates;
//! - [`control`]: the control-socket protocol types, server and client;
//! - [`daemon`]: the single owner of daemon state (releases, flows, persistence);
//! - [`events`]: the event record, ring and sink every part reports through (a leaf);
//! - [`process`]: spawning and supervising managed processes;
//! - [`proxy`]: the HTTP/WebSocket proxy with per-request routing and drain tracking;
//! - [`plugins`]: the hook/plugin registry and its built-in plugins;
//! - [`lua`]: the embedded Lua engine (sandbox, hook API);
//! - [`observability`]: event and diagnostic logging, systemd integration, metrics;
//! - [`util`]: small shared helpers (time formatting, signals, `/proc`).

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod lua;
pub mod observability;
pub mod plugins;
pub mod process;
pub mod proxy;
pub mod util;

#[cfg(test)]
mod layering {
    //! The arrows point down: these checks read the source, so a new import
    //! that points up fails here rather than in review.

    use std::path::Path;

    /// Every `crate::<part>` the `.rs` files under `dir` name.
    fn parts_named(dir: &Path) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(parts_named(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("crate::") {
                    let part: String = text[at + 7..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    found.push((path.display().to_string(), part));
                }
            }
        }
        found
    }

    fn src(part: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(part)
    }

    #[test]
    fn events_is_a_leaf() {
        for (file, part) in parts_named(&src("events")) {
            assert!(
                ["", "events", "util", "data"].contains(&part.as_str()),
                "{file} imports crate::{part}; events may use only util"
            );
        }
    }

    #[test]
    fn only_daemon_and_cli_import_the_daemon() {
        for lower in [
            "proxy",
            "process",
            "plugins",
            "lua",
            "control",
            "observability",
            "config",
            "events",
            "util",
        ] {
            for (file, part) in parts_named(&src(lower)) {
                assert_ne!(part, "daemon", "{file} imports crate::daemon");
            }
        }
    }

    /// Every `.rs` file under `dir` with its text.
    fn sources(dir: &Path) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        found
    }

    #[test]
    fn the_daemon_returns_typed_errors_not_strings() {
        for (file, text) in sources(&src("daemon")) {
            for line in text.lines() {
                let stringly = line.match_indices("Result<").any(|(at, _)| {
                    line[at..]
                        .split('>')
                        .next()
                        .is_some_and(|r| r.ends_with(", String"))
                });
                assert!(
                    !stringly,
                    "{file}: {line}: use a typed error (daemon/errors.rs)"
                );
            }
        }
    }
}
