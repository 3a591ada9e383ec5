pub mod frames;
pub mod interp;
pub mod layout;
pub mod lines;
pub mod locate;
pub mod published;
pub mod reader;
pub mod target;
