pub mod argv;
pub mod dump;
pub mod flamegraph;
pub mod format;
pub mod jsonl;
pub mod outputs;
pub mod report;
pub mod tui;
