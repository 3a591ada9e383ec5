pub mod elf;
pub mod mapped;
pub mod memory;
pub mod procfs;
pub mod signals;
pub mod spawn;
