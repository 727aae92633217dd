//! `rollbridge completion <shell>`: a completion script generated from the same
//! command definitions the parser uses, so it never falls out of date. The
//! values of `--process` (`logs`, `restart`) are completed from the config's
//! process ids, read by the hidden `rollbridge process-ids` at completion time.

use super::common::load_config;
use super::{Cli, CliResult, ConfigArg};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh or fish.
    pub shell: String,
}

pub fn run(args: CompletionArgs) -> CliResult {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            let _ = writeln!(
                std::io::stderr(),
                "Unsupported shell \"{other}\". Supported shells: bash, zsh, fish."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rollbridge", &mut script);
    let script = with_process_ids(shell, &String::from_utf8_lossy(&script));
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(script.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// Bash: the process ids of the config named on the command line (or the
/// default one), for the value of `--process`.
const BASH_IDS: &str = r#"_rollbridge_process_ids() {
    local i config=()
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case "${COMP_WORDS[i]}" in
            -c|--config) config=(--config "${COMP_WORDS[i+1]}") ;;
        esac
    done
    rollbridge process-ids "${config[@]}" 2>/dev/null
}

"#;

const ZSH_IDS: &str = r#"
_rollbridge_process_ids() {
    local -a config ids
    local i
    for ((i = 2; i < ${#words}; i++)); do
        case "${words[i]}" in
            -c|--config) config=(--config "${words[i+1]}") ;;
        esac
    done
    ids=(${(f)"$(rollbridge process-ids "${config[@]}" 2>/dev/null)"})
    compadd -a ids
}
"#;

const FISH_IDS: &str = r#"
function __fish_rollbridge_process_ids
    set -l words (commandline -opc)
    set -l config
    for i in (seq (count $words))
        if contains -- $words[$i] -c --config; and test $i -lt (count $words)
            set config --config $words[(math $i + 1)]
        end
    end
    rollbridge process-ids $config 2>/dev/null
end
"#;

/// The generated script with `--process` values completed from the config.
fn with_process_ids(shell: Shell, script: &str) -> String {
    match shell {
        Shell::Bash => {
            let completed = script.replace(
                "                --process)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
                "                --process)\n                    COMPREPLY=($(compgen -W \"$(_rollbridge_process_ids)\" -- \"${cur}\"))",
            );
            format!("{BASH_IDS}{completed}")
        }
        Shell::Zsh => {
            let completed = script
                .lines()
                .map(|line| {
                    if line.starts_with("'--process=[") {
                        line.replace("]:id:_default'", "]:id:_rollbridge_process_ids'")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            // The functions must exist before `compdef` runs the completer,
            // so they go right after the #compdef header line.
            match completed.split_once('\n') {
                Some((header, rest)) => format!("{header}\n{ZSH_IDS}{rest}\n"),
                None => completed,
            }
        }
        _ => {
            let completed: String = script
                .lines()
                .map(|line| {
                    if line.contains(" -l process ") && line.ends_with(" -r") {
                        format!("{line} -f -a \"(__fish_rollbridge_process_ids)\"\n")
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            format!("{FISH_IDS}{completed}")
        }
    }
}

#[derive(Debug, Args)]
pub struct ProcessIdsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `rollbridge process-ids`: one id per line, for completion scripts: every
/// process id of the config, then the instance ids (`id#n`) of replicated ones.
pub fn process_ids(args: ProcessIdsArgs) -> CliResult {
    let config = load_config(&args.config)?.config;
    let mut out = String::new();
    for process in &config.processes {
        out.push_str(&process.id);
        out.push('\n');
    }
    for process in config.processes.iter().filter(|p| p.replicas > 1) {
        for index in 0..process.replicas {
            out.push_str(&format!("{}#{index}\n", process.id));
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
