pub mod error;
pub mod escape;
