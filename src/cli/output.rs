//! Everything the CLI prints to stdout goes through here, for two reasons:
//!
//! * **Untrusted text is escaped.** Queue entries carry ids and reasons that clients chose; a
//!   vehicle id holding `ESC ] 0 ; … BEL` would retitle or clear the operator's terminal. Every
//!   control character other than newline and tab is printed as its Rust escape (`\u{1b}`).
//! * **A closed pipe ends the program quietly.** `routegate queue stats | head -1` closes the pipe
//!   after one line; Rust's `println!` would panic on the failed write. Here the program exits
//!   with status 0 instead, as `cat` and `ls` do.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

/// Print like `print!`, escaped; exit quietly if stdout is a closed pipe.
#[macro_export]
#[doc(hidden)]
macro_rules! cli_out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), false)
    };
}

/// Print like `println!`, escaped; exit quietly if stdout is a closed pipe.
#[macro_export]
#[doc(hidden)]
macro_rules! cli_outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), true)
    };
}

/// Write one formatted piece to stdout (see the module docs).
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    let text = args.to_string();
    let mut out = io::stdout().lock();
    let written = out
        .write_all(escape_controls(&text).as_bytes())
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `text` with every control character but newline and tab replaced by its escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_plain_text_is_untouched() {
        let hostile = "veh-\u{1b}]0;pwned\u{7}\u{1b}[2J-\u{0}\r";
        let shown = escape_controls(hostile);
        assert_eq!(shown, "veh-\\u{1b}]0;pwned\\u{7}\\u{1b}[2J-\\u{0}\\r");
        assert!(!shown.chars().any(|c| c.is_control()));
        assert!(matches!(
            escape_controls("seq 1\tveh-1\n"),
            Cow::Borrowed("seq 1\tveh-1\n")
        ));
    }
}
