//! llama.cpp's `llama-server`, started and stopped by Ozone for each configuration.

mod binary;
mod breakdown;
mod children;
mod client;
mod command;
mod fit;
mod interrupt;
mod log;
mod process;
mod supervisor;

pub use binary::resolve_binary;
pub use breakdown::{
    device_buffers_mib, exit_breakdown, loaded_device, parse_breakdowns, BreakdownTable,
    BreakdownWhen,
};
pub use children::{kill_all_servers, live_server_pids};
pub use client::LlamaClient;
pub use command::{command_line, fit_command_line, LlamaServerSpec, ALL_LAYERS, SERVER_ENV};
pub use fit::{
    fit_baseline, fit_ctx_command_line, fit_offload, parse_fit_log, parse_fit_offload, FitLog,
    FitOffloadLog, FitOffloadRequest, FitRequest, Props, DEFAULT_FIT_MARGIN_MIB,
};
pub use interrupt::Interruption;
pub use log::{classify_exit, LogTail};
pub use process::{ManagedServer, StartFailure};
