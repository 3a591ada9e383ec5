pub mod live;
pub mod metrics;
