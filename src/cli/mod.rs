//! The command line: [`args`] is what clap parses (every flag, its help and validation);
//! [`config`] is what it resolves to, the only thing the commands see.

pub mod args;
pub mod config;

pub use args::Cli;
pub use config::Invocation;
