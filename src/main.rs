use std::process::ExitCode;

fn main() -> ExitCode {
    rollbridge::cli::main()
}
