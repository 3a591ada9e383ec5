pub mod callback;
pub mod eventloop;
pub mod executor;
pub mod loopstate;
pub mod tasks;
