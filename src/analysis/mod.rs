pub mod diagnosis;
pub mod metrics;
#[cfg(test)]
pub(crate) mod reference;
pub mod stream;
