//! The access log, made for the request path: a line is formatted straight into
//! the serving thread's own buffer ([`format`](mod@format)) and handed to one writer thread
//! off the request path ([`sink`](mod@sink)); a full queue drops lines and counts them, it
//! never blocks a request. `tracing` stays for the process's own log.
//!
//! A leaf: the config names its [`Format`], [`Field`]s and [`Target`]; the request
//! path (`forward`) fills a [`format::Line`] when a response ends.

pub mod emit;
pub mod format;
pub mod sink;

pub use format::{Field, Format, Line};
pub use sink::Target;
