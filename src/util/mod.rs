//! Small helpers shared by every part of rollbridge.

pub mod env;
pub mod errno;
pub mod host;
pub mod lenient;
pub mod names;
pub mod panic;
pub mod signals;
pub mod sync;
pub mod time;
