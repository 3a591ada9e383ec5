pub mod callback;
pub mod eventloop;
pub mod loopstate;
pub mod tasks;
