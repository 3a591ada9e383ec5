//! loopspy: see what a running Python process's asyncio event loop is doing, from outside.
//!
//! One folder per layer; each uses only the layers below it (`tests/layers.rs` checks every
//! `use crate::` line):
//!
//! | layer | what it holds |
//! |---|---|
//! | [`base`] | failures with their remedies and exit codes; escaping target strings for a sink |
//! | [`process`] | another process: its memory, `/proc`, ELF files; starting a program; our signals |
//! | [`python`] | the interpreter: per-version layouts (data), published offsets, objects, frames, threads, attaching |
//! | [`asyncio`] | event loops (selector, uvloop), loop state, callbacks, tasks |
//! | [`capture`] | one look at a loop (shared by `dump` and the sampler), snapshots, sampling, recordings and their files |
//! | [`analysis`] | figures from samples: lag, busy share, blocking episodes, blame |
//! | [`output`] | reports (text, JSON), flame graphs, the TUI, writing files |
//! | [`cli`] | the command line: arguments and the configuration they resolve to |
//! | [`commands`] | `dump`, `record`, `top`, `render`, `demo`, `serve` |
//!
//! `main.rs` parses the command line and dispatches to a command.

pub mod base;
pub mod process;
pub mod python;
pub mod asyncio;
pub mod capture;
pub mod analysis;
pub mod output;
pub mod cli;
pub mod commands;

#[cfg(test)]
mod fuzz_tests;
