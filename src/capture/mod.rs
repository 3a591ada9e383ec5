pub mod capture_file;
pub mod launch;
pub mod probe;
pub mod recording;
pub mod sampler;
pub mod snapshot;
pub mod task_counter;
