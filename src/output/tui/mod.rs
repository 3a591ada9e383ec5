//! `loopspy top`'s dashboard: a model computed from the recording, and its drawing. The
//! terminal handling (raw mode, restoring it whatever happens) lives in `terminal`.

pub mod model;
pub mod terminal;
pub mod view;

#[cfg(test)]
mod tests;
