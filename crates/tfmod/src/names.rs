//! Module names, versions, bucket and prefix: validated, and the object keys built from them.
//! Pure: no I/O.

use crate::Error;

/// A module name: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes (one S3 key segment, no surprises in
/// a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleName(String);

impl ModuleName {
    pub fn parse(s: &str) -> Result<ModuleName, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
            });
        if ok {
            Ok(ModuleName(s.to_string()))
        } else {
            Err(Error::Usage(format!(
                "--name {s:?} is refused: use lowercase letters, digits, '-' and '_' (first a letter or digit), at most 64"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A semantic version `MAJOR.MINOR.PATCH[-PRE]`; build metadata (`+…`) is refused, because
/// SemVer ignores it for precedence and `+` is unsafe in an S3 URL. A refused version comes with
/// the one to write instead when there is one (`v1.2` → `1.2.0`), and only one this accepts.
pub fn parse_version(s: &str) -> Result<semver::Version, Error> {
    let instead = || {
        accepted(s)
            .map(|v| format!("; write {v}"))
            .unwrap_or_default()
    };
    if s.starts_with('v') {
        return Err(Error::Usage(format!(
            "version {s:?} is refused: no leading 'v'{}",
            instead()
        )));
    }
    let v = semver::Version::parse(s).map_err(|e| {
        Error::Usage(format!(
            "version {s:?} is not a semantic version MAJOR.MINOR.PATCH ({e}){}",
            instead()
        ))
    })?;
    if !v.build.is_empty() {
        return Err(Error::Usage(format!(
            "version {s:?} is refused: build metadata (+…) does not make a new version; drop it"
        )));
    }
    Ok(v)
}

/// The version `s` most likely means, if `parse_version` accepts it: without a leading `v`,
/// and with a missing minor or patch number as 0 (`1.2` → `1.2.0`).
fn accepted(s: &str) -> Option<semver::Version> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (s, None),
    };
    let parts = core.split('.').count();
    if !(1..=3).contains(&parts) {
        return None;
    }
    let mut candidate = core.to_string();
    for _ in parts..3 {
        candidate.push_str(".0");
    }
    if let Some(pre) = pre {
        candidate = format!("{candidate}-{pre}");
    }
    semver::Version::parse(&candidate)
        .ok()
        .filter(|v| v.build.is_empty())
}

/// A bucket name S3 accepts and go-getter can address: 3–63 of `a-z 0-9 -`, no dots (a dotted
/// bucket breaks go-getter's virtual-hosted URL parsing and the TLS wildcard certificate).
pub fn parse_bucket(s: &str) -> Result<String, Error> {
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else if s.contains('.') {
        Err(Error::Usage(format!(
            "--bucket {s:?} is refused: a bucket name with '.' cannot be used in an s3:: source (go-getter misreads it); use one without dots"
        )))
    } else {
        Err(Error::Usage(format!(
            "--bucket {s:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, '-')"
        )))
    }
}

/// A key prefix: `/`-separated segments of `A-Z a-z 0-9 . _ -`, no `.` or `..`; leading and
/// trailing `/` are dropped. Empty means the bucket's top.
pub fn parse_prefix(s: &str) -> Result<String, Error> {
    let p = s.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    for seg in p.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::Usage(format!(
                "--prefix {s:?} is refused: segments of letters, digits, '.', '_', '-' separated by '/'"
            )));
        }
    }
    Ok(p.to_string())
}

/// The object key of a module version: `PREFIX/NAME/X.Y.Z.EXT` (`zip` or `json`).
pub fn key(prefix: &str, name: &ModuleName, version: &semver::Version, ext: &str) -> String {
    if prefix.is_empty() {
        format!("{}/{version}.{ext}", name.as_str())
    } else {
        format!("{prefix}/{}/{version}.{ext}", name.as_str())
    }
}

/// The inverse of [`key`] for archives: `PREFIX/NAME/X.Y.Z.zip` → (name, version).
pub fn parse_archive_key(prefix: &str, key: &str) -> Option<(ModuleName, semver::Version)> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (name, file) = rest.split_once('/')?;
    let v = file.strip_suffix(".zip")?;
    Some((ModuleName::parse(name).ok()?, parse_version(v).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.2.3", "0.0.1", "10.20.30", "1.0.0-rc.1"] {
            assert!(parse_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "v1.2.3",
            "1.2",
            "1",
            "1.2.3+build",
            "01.2.3",
            "1.2.3 ",
            "",
            "latest",
        ] {
            assert_eq!(parse_version(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn a_refused_version_suggests_only_one_that_is_accepted() {
        for (bad, suggested) in [
            ("v1.2.3", Some("1.2.3")),
            ("v1.2", Some("1.2.0")),
            ("1.2", Some("1.2.0")),
            ("v1", Some("1.0.0")),
            ("1.0-rc.1", Some("1.0.0-rc.1")),
            ("latest", None),
            ("1.2.3+build", None),
            ("01.2.3", None),
            ("v", None),
        ] {
            let e = parse_version(bad).unwrap_err().to_string();
            let said = e.split("; write ").nth(1);
            assert_eq!(said, suggested, "{bad}: {e}");
            if let Some(v) = said {
                assert!(parse_version(v).is_ok(), "{bad}: suggested {v}, refused");
            }
        }
    }

    #[test]
    fn names_buckets_prefixes() {
        assert!(ModuleName::parse("vpc").is_ok());
        assert!(ModuleName::parse("rds-aurora_2").is_ok());
        for bad in ["", "-vpc", "VPC", "a/b", "a.b", &"x".repeat(65)] {
            assert!(ModuleName::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_bucket("acme-tf-modules").is_ok());
        assert!(parse_bucket("acme.modules")
            .unwrap_err()
            .to_string()
            .contains("dots"));
        assert!(parse_bucket("Acme").is_err());
        assert_eq!(parse_prefix("/modules/aws/").unwrap(), "modules/aws");
        assert_eq!(parse_prefix("").unwrap(), "");
        assert!(parse_prefix("a/../b").is_err());
        assert!(parse_prefix("a b").is_err());
    }

    #[test]
    fn keys_round_trip() {
        let n = ModuleName::parse("vpc").unwrap();
        let v = parse_version("1.2.3").unwrap();
        assert_eq!(key("", &n, &v, "zip"), "vpc/1.2.3.zip");
        assert_eq!(key("mods/aws", &n, &v, "json"), "mods/aws/vpc/1.2.3.json");
        assert_eq!(
            parse_archive_key("mods/aws", "mods/aws/vpc/1.2.3.zip"),
            Some((n.clone(), v.clone()))
        );
        assert_eq!(parse_archive_key("", "vpc/1.2.3.zip"), Some((n, v)));
        assert_eq!(parse_archive_key("mods", "mods/vpc/1.2.3.json"), None);
        assert_eq!(parse_archive_key("mods", "other/vpc/1.2.3.zip"), None);
    }
}
