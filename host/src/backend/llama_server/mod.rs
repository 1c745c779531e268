//! llama.cpp's `llama-server`, started and stopped by Ozone for each configuration.

mod binary;
mod children;
mod client;
mod command;
mod interrupt;
mod log;
mod process;
mod supervisor;

pub use binary::resolve_binary;
pub use children::{kill_all_servers, live_server_pids};
pub use client::LlamaClient;
pub use command::{command_line, LlamaServerSpec, SERVER_ENV};
pub use interrupt::Interruption;
pub use log::{classify_exit, LogTail};
pub use process::{ManagedServer, StartFailure};
