pub mod error;
pub mod escape;
pub mod units;
