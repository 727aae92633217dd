//! Colour for human output: ANSI styles, only on a terminal, honouring
//! `NO_COLOR` (https://no-color.org) unless `--color always` says otherwise.

/// `--color auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal unless `NO_COLOR` is set to a non-empty value or TERM is `dumb`.
    #[default]
    Auto,
    /// Colour whenever human output is printed (it is only printed on a terminal).
    Always,
    /// Never colour.
    Never,
}

/// Whether to colour, decided once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub enabled: bool,
}

impl Paint {
    pub const NONE: Paint = Paint { enabled: false };

    /// The decision for output that goes to a terminal.
    pub fn for_terminal(choice: ColorChoice) -> Paint {
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
                !no_color && !dumb
            }
        };
        Paint { enabled }
    }

    fn style(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.style("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.style("2", text)
    }

    pub fn green(self, text: &str) -> String {
        self.style("32", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.style("33", text)
    }

    pub fn red(self, text: &str) -> String {
        self.style("31", text)
    }

    /// A state word coloured by what it means: good green, in between yellow,
    /// bad red, the rest plain.
    pub fn state(self, state: &str) -> String {
        match state {
            "active" | "running" | "healthy" | "ok" => self.green(state),
            "starting" | "draining" | "stopping" | "restarting" | "backoff" | "paused"
            | "maintenance" => self.yellow(state),
            "failed" | "crashed" | "errored" | "exited" => self.red(state),
            _ => state.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_only_when_enabled() {
        assert_eq!(Paint::NONE.red("x"), "x");
        assert_eq!(Paint { enabled: true }.red("x"), "\x1b[31mx\x1b[0m");
        assert_eq!(Paint::for_terminal(ColorChoice::Never), Paint::NONE);
        assert!(Paint::for_terminal(ColorChoice::Always).enabled);
    }
}
