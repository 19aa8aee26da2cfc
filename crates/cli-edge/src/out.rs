//! Writing without a panic. `println!` panics when stdout is closed (`tfmod versions vpc | head
//! -1`: Rust ignores SIGPIPE, so the write fails with EPIPE), and a panic in the panic hook
//! aborts. A reader that went away is not the tool's failure: these write one line, drop a
//! failure, and the command goes on to the exit code it reaches. (eipool, whose report is what
//! a claim delivers, writes it itself and exits [`crate::exit::IOERR`] when it cannot.)

use std::io::Write;

/// One line to stdout, never a panic.
pub fn say(line: std::fmt::Arguments) {
    let _ = write_line(&mut std::io::stdout().lock(), line);
}

/// [`say`] to stderr.
pub fn tell(line: std::fmt::Arguments) {
    let _ = write_line(&mut std::io::stderr().lock(), line);
}

/// `line` and a newline, flushed.
fn write_line(w: &mut impl Write, line: std::fmt::Arguments) -> std::io::Result<()> {
    w.write_fmt(line)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Whether a failed write means only that the reader left early (`… --help | head -1`): what it
/// wanted, it read.
pub fn reader_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader is gone.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_its_text_and_a_newline() {
        let mut buf = Vec::new();
        write_line(&mut buf, format_args!("a {}", 1)).unwrap();
        assert_eq!(buf, b"a 1\n");
    }

    #[test]
    fn a_closed_reader_is_an_error_to_drop_not_a_panic() {
        let e = write_line(&mut Closed, format_args!("x")).unwrap_err();
        assert!(reader_gone(&e));
        assert!(!reader_gone(&std::io::ErrorKind::PermissionDenied.into()));
    }
}
