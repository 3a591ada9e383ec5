pub mod argv;
pub mod dump;
pub mod flamegraph;
pub mod format;
pub mod outputs;
pub mod prometheus;
pub mod report;
pub mod tui;
