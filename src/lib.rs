//! hoist keeps Docker hosts running the image that was just pushed.
#![forbid(unsafe_code)]

pub mod config;
pub mod deploy;
pub mod event;
pub mod notify;
pub mod secret;
pub mod source;
