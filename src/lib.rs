//! loopspy: see what a running Python process's asyncio event loop is doing, from outside.
//!
//! Layers, bottom up: [`memory`] (bytes from another process) → [`layout`] (per-version
//! offsets, data only) → [`reader`] (Python objects) → [`interp`], [`frames`], [`eventloop`],
//! [`callback`] (interpreter and asyncio structures) → [`snapshot`] (one look at every loop)
//! → [`dump`] (reports) → [`commands`] (the CLI).

pub mod argv;
pub mod callback;
pub mod capture_file;
pub mod cli;
pub mod commands;
pub mod dump;
pub mod elf;
pub mod error;
pub mod escape;
pub mod eventloop;
pub mod flamegraph;
pub mod frames;
pub mod interp;
pub mod layout;
pub mod lines;
pub mod loopstate;
pub mod memory;
pub mod metrics;
pub mod outputs;
pub mod probe;
pub mod procfs;
pub mod published;
pub mod reader;
pub mod recording;
pub mod report;
pub mod sampler;
pub mod snapshot;
pub mod spawn;
pub mod stop;
pub mod target;
pub mod task_counter;
pub mod tasks;
pub mod tui;

#[cfg(test)]
mod fuzz_tests;
