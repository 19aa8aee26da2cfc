//! Files read and written without blocking: `--timeout` bounds the whole decision, and a FIFO
//! or a device named as the policy, the OAuth key, a cache entry or the audit log would block
//! an `open` or a `read` forever. Inputs must be regular files (opened with `O_NONBLOCK`, so
//! that opening a FIFO returns at once, then refused) and are read up to a limit. The audit log
//! is opened with `O_NONBLOCK` too — a FIFO without a reader fails at once, a full pipe fails
//! instead of waiting — and synced only when it is a regular file: a pipe or a terminal, such
//! as `/dev/stderr`, cannot be synced and need not be.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;

fn nonblocking(opts: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    opts
}

/// The contents of the regular file at `path`, at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = nonblocking(OpenOptions::new().read(true)).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory could block or mislead)",
        ));
    }
    let mut bytes = Vec::new();
    f.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Append `line` and a newline to `path` (created if missing) in one write, without blocking;
/// sync it to disk when it is a regular file.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut f = nonblocking(OpenOptions::new().create(true).append(true))
        .open(path)
        .map_err(|e| {
            #[cfg(unix)]
            if e.raw_os_error() == Some(libc::ENXIO) {
                return io::Error::new(e.kind(), "a FIFO that nobody is reading");
            }
            e
        })?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    f.write_all(&bytes)?;
    if f.metadata()?.is_file() {
        f.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "rules: []\n").unwrap();
        assert_eq!(read_regular_text(&f, 100).unwrap(), "rules: []\n");
        assert!(read_regular(&f, 5)
            .unwrap_err()
            .to_string()
            .contains("larger than 5"));
        let e = read_regular(dir.path(), 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(read_regular(Path::new("/dev/zero"), 100).is_err());
    }

    #[test]
    fn a_line_is_appended_to_a_file_or_a_character_device() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.jsonl");
        append_line(&f, "one").unwrap();
        append_line(&f, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "one\ntwo\n");
        // A character device cannot be synced; that is not a failure to write.
        append_line(Path::new("/dev/null"), "three").unwrap();
        // A FIFO nobody reads fails at once, saying so.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = append_line(&fifo, "four").unwrap_err();
        assert!(e.to_string().contains("nobody is reading"), "{e}");
    }
}
