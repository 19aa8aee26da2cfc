//! What a successful claim tells the world: one JSON object on stdout and, with `--output`, an
//! env file the media server can source, written atomically.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;

use crate::pure::ids::{AllocationId, AssociationId, EniId};

/// The result of `eipool claim`, printed as JSON on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Claimed {
    /// The Elastic IP.
    pub public_ip: Ipv4Addr,
    /// Its allocation id.
    pub allocation_id: AllocationId,
    /// The association with our interface.
    pub association_id: AssociationId,
    /// Our interface.
    pub network_interface_id: EniId,
    /// The private IP it maps to.
    pub private_ip: Ipv4Addr,
    /// True when the interface already held this address and nothing was changed.
    pub reused: bool,
    /// Wall time of the whole command, in milliseconds.
    pub elapsed_ms: u64,
    /// How long it waited in the pool's line before this address reached it, in milliseconds
    /// (only when it waited: an agent, or `claim --wait`, that found the pool full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
}

impl Claimed {
    /// The env file's content: `KEY=value` lines a shell can source.
    pub(crate) fn env_file(&self) -> String {
        format!(
            "EIPOOL_PUBLIC_IP={}\nEIPOOL_ALLOCATION_ID={}\nEIPOOL_ASSOCIATION_ID={}\nEIPOOL_NETWORK_INTERFACE_ID={}\nEIPOOL_PRIVATE_IP={}\n",
            self.public_ip, self.allocation_id, self.association_id, self.network_interface_id, self.private_ip
        )
    }
}

/// Refuse a `path` that exists and is not a regular file: a symlink, a device, a FIFO, a
/// directory. eipool replaces only regular files (as root, renaming over `/dev/full` would
/// replace the device node).
fn regular_or_absent(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(std::io::Error::other(format!(
            "it is not a regular file (it is {}); eipool writes only regular files",
            kind(&m.file_type())
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// Write `content` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over `path`. Readers see the old file or the new one, never half of one.
/// Only a regular file (or nothing) is replaced.
pub(crate) fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    regular_or_absent(path)?;
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".eipool-")
        .tempfile_in(dir)?;
    tmp.write_all(content.as_bytes())?;
    tmp.as_file().sync_all()?;
    set_readable(tmp.path())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Check before doing anything that `path` can be written, so a claim never takes an address it
/// then cannot report.
pub(crate) fn check_writable(path: &Path) -> std::io::Result<()> {
    regular_or_absent(path)?;
    tempfile::Builder::new()
        .prefix(".eipool-check-")
        .tempfile_in(parent_dir(path))
        .map(drop)
}

/// The value of `key` in an env file's `text` as a shell that sources it sees it: the last
/// `KEY=value` (or `export KEY=value`) line wins, and one pair of quotes around the value goes.
/// (CRLF line ends and `#` comments are fine.)
pub(crate) fn env_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("export ").map_or(l, str::trim_start);
            l.strip_prefix(key)?.strip_prefix('=')
        })
        .next_back()
        .map(|v| unquote(v.trim()))
}

/// `v` without one pair of surrounding `"` or `'`.
fn unquote(v: &str) -> &str {
    ['"', '\'']
        .iter()
        .find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(v)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The media container may run as another user than the initContainer: world-readable,
    // as the file holds no secret.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Claimed {
        Claimed {
            public_ip: "203.0.113.7".parse().unwrap(),
            allocation_id: "eipalloc-1".parse().unwrap(),
            association_id: "eipassoc-2".parse().unwrap(),
            network_interface_id: "eni-3".parse().unwrap(),
            private_ip: "10.0.1.4".parse().unwrap(),
            reused: false,
            elapsed_ms: 12,
            waited_ms: None,
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        for k in [
            "public_ip",
            "allocation_id",
            "association_id",
            "network_interface_id",
            "reused",
            "elapsed_ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert_eq!(v["public_ip"], "203.0.113.7");
        assert_eq!(v["reused"], false);
    }

    #[test]
    fn env_file_is_written_whole_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eipool.env");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, &sample().env_file()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("EIPOOL_PUBLIC_IP=203.0.113.7\n"), "{text}");
        assert!(text.contains("EIPOOL_ALLOCATION_ID=eipalloc-1\n"), "{text}");
        assert!(
            text.contains("EIPOOL_ASSOCIATION_ID=eipassoc-2\n"),
            "{text}"
        );
        assert!(
            text.contains("EIPOOL_NETWORK_INTERFACE_ID=eni-3\n"),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
    }

    #[test]
    fn env_values_are_read_back() {
        let text = sample().env_file();
        assert_eq!(
            env_value(&text, "EIPOOL_ASSOCIATION_ID"),
            Some("eipassoc-2")
        );
        assert_eq!(env_value(&text, "EIPOOL_PUBLIC_IP"), Some("203.0.113.7"));
        assert_eq!(env_value(&text, "EIPOOL_PUBLIC"), None);
        assert_eq!(env_value(&text, "NOPE"), None);
    }

    #[test]
    fn unwritable_output_is_caught_up_front() {
        assert!(check_writable(Path::new("/nonexistent-dir/eipool.env")).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("x.env")).is_ok());
    }

    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "old").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // (path, refused, what the message says)
        let cases = [
            (file.as_path(), false, ""),
            (dir.path().join("absent").leak() as &Path, false, ""),
            (link.as_path(), true, "a symlink"),
            (fifo.as_path(), true, "a FIFO"),
            (Path::new("/dev/null"), true, "a device"),
            (dir.path(), true, "a directory"),
        ];
        for (path, refused, says) in cases {
            let r = check_writable(path);
            assert_eq!(r.is_err(), refused, "{}: {r:?}", path.display());
            if let Err(e) = r {
                assert!(e.to_string().contains(says), "{}: {e}", path.display());
            }
        }
        // The write checks again (the path may have changed since), and never follows the link.
        assert!(write_atomically(&link, "new").is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "old");
    }

    /// The hex part of an EC2 id.
    fn hex() -> impl proptest::strategy::Strategy<Value = String> {
        "[0-9a-f]{1,17}"
    }

    #[test]
    fn env_file_round_trips_and_reads_as_a_shell_would() {
        use proptest::prelude::*;
        let strategy = (hex(), hex(), hex(), any::<u32>(), any::<u32>());
        crate::pure::tests_runner("env file", 256)
            .run(&strategy, |(alloc, assoc, eni, ip, private)| {
                let c = Claimed {
                    public_ip: ip.into(),
                    allocation_id: format!("eipalloc-{alloc}").parse().unwrap(),
                    association_id: format!("eipassoc-{assoc}").parse().unwrap(),
                    network_interface_id: format!("eni-{eni}").parse().unwrap(),
                    private_ip: private.into(),
                    reused: false,
                    elapsed_ms: 0,
                    waited_ms: None,
                };
                let text = c.env_file();
                let assoc = c.association_id.to_string();
                for t in [text.clone(), text.replace('\n', "\r\n")] {
                    prop_assert_eq!(env_value(&t, "EIPOOL_ASSOCIATION_ID"), Some(assoc.as_str()));
                    prop_assert_eq!(
                        env_value(&t, "EIPOOL_PUBLIC_IP").map(str::to_string),
                        Some(c.public_ip.to_string())
                    );
                    prop_assert_eq!(
                        env_value(&t, "EIPOOL_NETWORK_INTERFACE_ID"),
                        Some(c.network_interface_id.as_str())
                    );
                }
                // A later line wins, quoted or exported, as in `set -a; . FILE`.
                for later in [
                    "EIPOOL_ASSOCIATION_ID=eipassoc-later",
                    "EIPOOL_ASSOCIATION_ID=\"eipassoc-later\"",
                    "export EIPOOL_ASSOCIATION_ID='eipassoc-later'",
                ] {
                    let t = format!("{text}# edited\n{later}\n");
                    prop_assert_eq!(
                        env_value(&t, "EIPOOL_ASSOCIATION_ID"),
                        Some("eipassoc-later")
                    );
                }
                // A missing key is missing, not another key's value.
                let without: String = text
                    .lines()
                    .filter(|l| !l.starts_with("EIPOOL_ASSOCIATION_ID="))
                    .map(|l| format!("{l}\n"))
                    .collect();
                prop_assert_eq!(env_value(&without, "EIPOOL_ASSOCIATION_ID"), None);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn any_env_file_text_reads_without_a_panic_and_never_across_lines() {
        use proptest::prelude::*;
        let text = prop_oneof![
            "\\PC{0,200}",
            "(EIPOOL_ASSOCIATION_ID|export EIPOOL_ASSOCIATION_ID| EIPOOL_ASSOCIATION_ID)=[\"' a-z0-9\\r-]{0,20}(\\r?\\n[A-Z_=\"' a-z]{0,20}){0,4}",
            proptest::collection::vec(any::<u8>(), 0..200)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ];
        crate::pure::tests_runner("env file text", 512)
            .run(&text, |t| {
                if let Some(v) = env_value(&t, "EIPOOL_ASSOCIATION_ID") {
                    // One line's: a bare CR inside a line is the value's (and fails the
                    // id's check), as it would be for a shell.
                    prop_assert!(!v.contains('\n'), "{v:?}");
                }
                Ok(())
            })
            .unwrap();
    }
}
