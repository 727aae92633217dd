//! control

pub mod client;
pub mod probe;
