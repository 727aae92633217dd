//! Small helpers shared by every part of rollbridge.

pub mod errno;
pub mod signals;
pub mod time;
