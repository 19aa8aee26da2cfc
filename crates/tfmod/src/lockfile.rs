//! The lock file `tfmod.lock`: one line per archive source, `sha256:HEX  SOURCE`, sorted. Pure.

use std::collections::BTreeMap;

/// The lock file's name, in a stage directory.
pub const LOCK_FILE: &str = "tfmod.lock";

const HEADER: &str = "\
# tfmod.lock: the SHA-256 of each module archive used below this directory.
# Written by `tfmod lock` and `tfmod pin`; checked by `tfmod verify`. Do not edit by hand.
";

/// Source (without `//subdir`) → lowercase hex SHA-256.
pub type Lock = BTreeMap<String, String>;

pub fn render(lock: &Lock) -> String {
    let mut out = HEADER.to_string();
    for (source, sha) in lock {
        out.push_str(&format!("sha256:{sha}  {source}\n"));
    }
    out
}

/// Parses a lock file; the error names the line.
pub fn parse(text: &str) -> Result<Lock, String> {
    let mut lock = Lock::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected `sha256:<64 hex>  <source>`", i + 1);
        let (sha, source) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let sha = sha.strip_prefix("sha256:").ok_or_else(bad)?;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let source = source.trim();
        if lock.insert(source.to_string(), sha.to_string()).is_some() {
            return Err(format!("line {}: {source} is listed twice", i + 1));
        }
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut l = Lock::new();
        l.insert(
            "s3::https://b.s3.eu-west-1.amazonaws.com/vpc/1.0.0.zip".into(),
            "a".repeat(64),
        );
        l.insert(
            "s3::https://b.s3.eu-west-1.amazonaws.com/app/2.0.0.zip".into(),
            "0".repeat(64),
        );
        let text = render(&l);
        assert!(
            text.find("/app/").unwrap() < text.find("/vpc/").unwrap(),
            "sorted"
        );
        assert_eq!(parse(&text).unwrap(), l);
        assert!(parse("sha256:xyz  s3::x").unwrap_err().contains("line 1"));
        let dup = format!("sha256:{0}  s\nsha256:{0}  s\n", "a".repeat(64));
        assert!(parse(&dup).unwrap_err().contains("twice"));
    }
}
