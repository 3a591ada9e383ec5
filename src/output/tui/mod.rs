//! `loopspy top`'s dashboard: its keys (a table, and the actions they map to), a model
//! computed from the live figures, and its drawing. The terminal handling (raw mode,
//! restoring it whatever happens) lives in `terminal`.

pub mod keys;
pub mod model;
pub mod terminal;
pub mod view;

#[cfg(test)]
mod tests;
