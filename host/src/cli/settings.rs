use super::Failure;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn run(command: Command) -> Result<(), Failure> {
    match command {}
}
