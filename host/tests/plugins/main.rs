//! Strategy plugins: the sandbox and its bounds (`sandbox`), the default plugins'
//! decision tables run natively and as components (`tables`), `ozone plugins` as a user
//! runs it (`cli`), and an author's first hour with the SDK (`first_hour`).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod first_hour;
mod sandbox;
mod tables;
