use std::process::ExitCode;

fn main() -> ExitCode {
    ozone::cli::main()
}
