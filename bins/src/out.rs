//! Writing to stdout and stderr without panicking.
//!
//! std's `println!` panics when the reading end of a pipe is gone (`pre-deploy list | head`,
//! a log shipper that died). A lost line of output must never abort a command half-way (a
//! `run` whose deploy already started, a restore between its steps), so the crate's
//! `println!`, `print!` and `eprintln!` (defined in `lib.rs`) write through here and drop what
//! cannot be written.

use std::io::Write;

/// Writes to stdout; an error (a closed pipe) is ignored.
pub fn stdout(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// Writes to stderr; an error (a closed pipe) is ignored.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
