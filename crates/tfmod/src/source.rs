//! Module `source` strings, read the way go-getter (the library Terraform and Terragrunt fetch
//! modules with) reads them, and the `s3::` form tfmod writes. Pure.
//!
//! Reading (go-getter's `Client.Get`, `SourceDirSubdir`, `get_s3.go` `parseUrl`): a forced getter
//! `X::` first; `//subdir` after the host; the URL's path is **percent-decoded** before it is split
//! into bucket and key (`tf%2Fvpc%2F1.0.0.zip` is the object `tf/vpc/1.0.0.zip`). A host under
//! `amazonaws.com` is split on dots: `s3[-REGION].amazonaws.com/BUCKET/KEY` (path-style),
//! `BUCKET.s3-REGION.amazonaws.com/KEY` and `BUCKET.s3.REGION.amazonaws.com/KEY` (virtual-hosted);
//! the current path-style host `s3.REGION.amazonaws.com/BUCKET/KEY` is read as bucket `s3`, so it
//! is refused. Any other host is an S3-compatible endpoint, `HOST/BUCKET/KEY?region=R`. An
//! `https://…amazonaws.com/…` URL without `s3::` (fetched over HTTP) and a scheme-less
//! `BUCKET.s3….amazonaws.com/KEY` (go-getter's S3 detector) name an S3 object too.
//!
//! Query parameters: `checksum=sha256:HEX` (go-getter checks the downloaded archive against it
//! before unpacking), `version=ID` (S3's VersionId: that object version is fetched) and `region`.
//! Credentials (`aws_access_key_*`, `user:password@`) are refused and never echoed: every message
//! shows a source through [`redact`].

use std::fmt;

/// Where the bucket is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// AWS S3 in `region`.
    Aws { region: String },
    /// An S3-compatible endpoint, `scheme://host[:port]`, path-style.
    Custom { base: String, region: String },
}

/// An S3 module source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct S3Source {
    pub endpoint: Endpoint,
    pub bucket: String,
    /// The object key, decoded (what S3 is asked for).
    pub key: String,
    /// A `//subdir` inside the archive (Terraform's module-in-package syntax), without the `//`.
    pub subdir: Option<String>,
    /// `?version=`: the S3 VersionId go-getter fetches.
    pub version_id: Option<String>,
    /// `?checksum=sha256:`: lowercase hex; go-getter refuses other bytes.
    pub checksum: Option<String>,
}

/// What a module source is, for tfmod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An object in S3 (whatever the form it is written in).
    S3(S3Source),
    /// Anything else: git, a registry, a local path, another HTTP server.
    Other,
}

/// Parses a module source. The error never contains a secret of the source.
pub fn parse(s: &str) -> Result<Parsed, String> {
    let forced = s
        .split_once("::")
        .filter(|(g, _)| !g.is_empty() && g.bytes().all(|b| b.is_ascii_alphanumeric()));
    let url = match forced {
        Some(("s3", url)) => url.to_string(),
        Some(_) => return Ok(Parsed::Other),
        None => match s.split_once("://") {
            Some((scheme, rest)) if scheme == "https" || scheme == "http" => {
                let host = rest.split(['/', '?']).next().unwrap_or("");
                if !host
                    .rsplit('@')
                    .next()
                    .unwrap_or("")
                    .ends_with("amazonaws.com")
                {
                    return Ok(Parsed::Other);
                }
                s.to_string()
            }
            Some(_) => return Ok(Parsed::Other),
            // go-getter's S3 detector: `BUCKET.s3.amazonaws.com/KEY` without a scheme.
            None if s.contains(".amazonaws.com/") => format!("https://{s}"),
            None => return Ok(Parsed::Other),
        },
    };
    parse_s3_url(&url)
        .map(Parsed::S3)
        .map_err(|why| format!("{}: {why}", redact(s)))
}

fn parse_s3_url(url: &str) -> Result<S3Source, String> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or("expected s3::https://… (a URL with a scheme)")?;
    if scheme != "https" && scheme != "http" {
        return Err("the scheme must be https or http".into());
    }
    if url.contains('#') {
        return Err("a #fragment is not part of a module source".into());
    }
    let (url, subdir) = source_dir_subdir(url);
    if let Some(sub) = &subdir {
        check_subdir(sub)?;
    }
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url.as_str(), None),
    };
    let rest = &url[scheme.len() + 3..];
    let (host, raw_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.contains('@') {
        return Err(
            "credentials in the URL (user:password@) are refused: the reader's AWS credential chain is used"
                .into(),
        );
    }
    let path = decode_path(raw_path)?;
    let q = Query::parse(query.unwrap_or(""))?;
    let (endpoint, bucket, key) = if let Some(h) = host.strip_suffix("amazonaws.com") {
        let parts: Vec<&str> = h.split('.').collect();
        let region_of = |p: &str| {
            p.strip_prefix("s3-")
                .or_else(|| p.strip_prefix("s3"))
                .unwrap_or("?")
                .to_string()
        };
        match parts.as_slice() {
            [first, ""] if first.starts_with("s3") => {
                let region = match region_of(first).as_str() {
                    "" => "us-east-1".to_string(),
                    r => r.to_string(),
                };
                let mut it = path.splitn(3, '/').skip(1);
                let (Some(bucket), Some(key)) = (it.next(), it.next()) else {
                    return Err("no object key after the bucket".into());
                };
                (Endpoint::Aws { region }, bucket.to_string(), key.to_string())
            }
            ["s3", region, ""] => {
                return Err(format!(
                    "go-getter reads host s3.{region}.amazonaws.com as a bucket named \"s3\"; write https://BUCKET.s3.{region}.amazonaws.com/KEY"
                ))
            }
            [bucket, s3, ""] if s3.starts_with("s3-") => (
                Endpoint::Aws {
                    region: region_of(s3),
                },
                bucket.to_string(),
                path.trim_start_matches('/').to_string(),
            ),
            [bucket, "s3", region, ""] => (
                Endpoint::Aws {
                    region: region.to_string(),
                },
                bucket.to_string(),
                path.strip_prefix('/').unwrap_or(&path).to_string(),
            ),
            _ => return Err("not an S3 host go-getter understands".into()),
        }
    } else {
        let mut it = path.splitn(3, '/').skip(1);
        let (Some(bucket), Some(key)) = (it.next(), it.next()) else {
            return Err(format!("expected s3::{scheme}://HOST/BUCKET/KEY"));
        };
        (
            Endpoint::Custom {
                base: format!("{scheme}://{host}"),
                region: q.region.clone().unwrap_or_else(|| "us-east-1".into()),
            },
            bucket.to_string(),
            key.to_string(),
        )
    };
    if bucket.is_empty() || key.is_empty() {
        return Err("empty bucket or key".into());
    }
    Ok(S3Source {
        endpoint,
        bucket,
        key,
        subdir,
        version_id: q.version,
        checksum: q.checksum,
    })
}

/// go-getter's `SourceDirSubdir`: the first `//` after the scheme and before the query starts
/// the subdirectory; the query stays with the URL.
fn source_dir_subdir(url: &str) -> (String, Option<String>) {
    let stop = url.find('?').unwrap_or(url.len());
    let offset = url[..stop].find("://").map(|i| i + 3).unwrap_or(0);
    let Some(i) = url[offset..stop].find("//") else {
        return (url.to_string(), None);
    };
    let i = i + offset;
    let (sub, query) = match url[i + 2..].split_once('?') {
        Some((s, q)) => (s, format!("?{q}")),
        None => (&url[i + 2..], String::new()),
    };
    (format!("{}{query}", &url[..i]), Some(sub.to_string()))
}

/// A `//subdir` stays inside the archive: Terragrunt joins it to the download directory
/// (`internal/tf/source.go` `NewSource`) and go-getter to the unpacked tree, so `..`, a leading
/// `/` or `\`, or a glob would reach other files. Checked raw and percent-decoded.
fn check_subdir(sub: &str) -> Result<(), String> {
    let decoded = percent_encoding::percent_decode_str(sub).decode_utf8_lossy();
    for s in [sub, decoded.as_ref()] {
        let escapes = s.starts_with(['/', '\\'])
            || s.split(['/', '\\']).any(|seg| seg == ".." || seg == ".")
            || s.contains(['*', '?', '[', '\\', ':', '%'])
            || s.is_empty();
        if escapes {
            return Err(
                "its //subdir must be a plain directory of the archive (no '..', '.', leading '/', '\\', ':', '%' or glob): Terraform would run files outside the module".into(),
            );
        }
    }
    Ok(())
}

/// Go's path unescaping: `%XX` decoded, a malformed escape refused.
fn decode_path(raw: &str) -> Result<String, String> {
    let b = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
            return Err("a malformed %-escape in the path".into());
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "the decoded path is not UTF-8".to_string())
}

struct Query {
    region: Option<String>,
    version: Option<String>,
    checksum: Option<String>,
}

impl Query {
    fn parse(q: &str) -> Result<Query, String> {
        if q.contains(';') {
            return Err("';' in the query (Go refuses it)".into());
        }
        let mut out = Query {
            region: None,
            version: None,
            checksum: None,
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let slot = match k.as_ref() {
                "region" => &mut out.region,
                "version" => &mut out.version,
                "checksum" => &mut out.checksum,
                "aws_access_key_id" | "aws_access_key_secret" | "aws_access_token" => {
                    return Err(
                        "credentials in a module source are refused: the reader's AWS credential chain is used"
                            .into(),
                    )
                }
                _ => {
                    // Not named: a bare key may be a token.
                    return Err(
                        "a query parameter tfmod does not check (only checksum, version and region are allowed)".into(),
                    );
                }
            };
            if slot.is_some() {
                return Err(format!("{k} is given twice"));
            }
            *slot = Some(v.into_owned());
        }
        if let Some(c) = out.checksum.take() {
            let hex = c
                .split_once(':')
                .filter(|(t, _)| t.eq_ignore_ascii_case("sha256"))
                .map(|(_, h)| h)
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or("checksum must be sha256:<64 hex digits> (what tfmod writes)")?;
            out.checksum = Some(hex.to_ascii_lowercase());
        }
        if out.version.as_deref() == Some("") {
            return Err("an empty version".into());
        }
        Ok(out)
    }
}

impl S3Source {
    /// The object, without `//subdir` and `?checksum=`: what the lock keys on (one object, one
    /// hash). The version stays: another version is another object.
    pub fn object(&self) -> S3Source {
        S3Source {
            subdir: None,
            checksum: None,
            ..self.clone()
        }
    }

    /// The same endpoint, bucket and subdirectory; another key, version and checksum (a pin).
    pub fn pinned(&self, key: &str, version_id: Option<&str>, sha256: &str) -> S3Source {
        S3Source {
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
            checksum: Some(sha256.to_string()),
            ..self.clone()
        }
    }

    /// Whether this is an object of `bucket`, under `prefix` (empty: anywhere in it).
    pub fn is_in(&self, bucket: &str, prefix: &str) -> bool {
        self.bucket == bucket && (prefix.is_empty() || self.key.starts_with(&format!("{prefix}/")))
    }
}

/// A key as a URL path: unreserved bytes and `/` as they are, the rest %-escaped (and a second
/// `/` in a row too, which go-getter would take for `//subdir`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut prev_slash = true; // the key follows a '/' already
    for b in key.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !prev_slash);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        prev_slash = b == b'/';
    }
    out
}

impl fmt::Display for S3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sub = match &self.subdir {
            Some(s) => format!("//{s}"),
            None => String::new(),
        };
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Endpoint::Custom { region, .. } = &self.endpoint {
            q.append_pair("region", region);
        }
        if let Some(v) = &self.version_id {
            q.append_pair("version", v);
        }
        if let Some(c) = &self.checksum {
            q.append_pair("checksum", &format!("sha256:{c}"));
        }
        let q = q.finish().replace("%3A", ":");
        let q = if q.is_empty() { q } else { format!("?{q}") };
        let key = encode_key(&self.key);
        match &self.endpoint {
            Endpoint::Aws { region } => write!(
                f,
                "s3::https://{}.s3.{region}.amazonaws.com/{key}{sub}{q}",
                self.bucket
            ),
            Endpoint::Custom { base, .. } => write!(f, "s3::{base}/{}/{key}{sub}{q}", self.bucket),
        }
    }
}

/// A source as it may be shown: anything before an `@` in the authority (after `://`, or
/// before the first `/` when there is no scheme) replaced by `***`, and every query pair but
/// `region`, `version`, `checksum` and `ref` shown as `***` (a bare key may be a token).
pub fn redact(s: &str) -> String {
    let (head, query) = match s.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (s, None),
    };
    let auth_start = match head.find("://") {
        Some(i) => i + 3,
        None => head.split_once("::").map(|(g, _)| g.len() + 2).unwrap_or(0),
    };
    let auth_end = head[auth_start..]
        .find('/')
        .map(|j| auth_start + j)
        .unwrap_or(head.len());
    let head = match head[auth_start..auth_end].rfind('@') {
        Some(at) => format!(
            "{}***@{}",
            &head[..auth_start],
            &head[auth_start + at + 1..]
        ),
        None => head.to_string(),
    };
    let Some(query) = query else { return head };
    let shown: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if ["region", "version", "checksum", "ref"].contains(&k) => {
                format!("{k}={v}")
            }
            _ => "***".to_string(),
        })
        .collect();
    format!("{head}?{}", shown.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(s: &str) -> S3Source {
        match parse(s).unwrap() {
            Parsed::S3(x) => x,
            Parsed::Other => panic!("{s}: not S3"),
        }
    }

    fn aws(bucket: &str, key: &str) -> S3Source {
        S3Source {
            endpoint: Endpoint::Aws {
                region: "eu-west-1".into(),
            },
            bucket: bucket.into(),
            key: key.into(),
            subdir: None,
            version_id: None,
            checksum: None,
        }
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_written_form_round_trips_with_checksum_version_and_subdir() {
        let mut s = aws("acme-modules", "tf/vpc/1.2.0.zip");
        assert_eq!(
            s.to_string(),
            "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip"
        );
        s.subdir = Some("modules/x".into());
        s.version_id = Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into());
        s.checksum = Some(SHA.into());
        let text = s.to_string();
        assert_eq!(
            text,
            format!("s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip//modules/x?version=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY&checksum=sha256:{SHA}")
        );
        assert_eq!(s3(&text), s);
        assert_eq!(
            s.object().to_string(),
            "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip?version=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
        );
        let custom = S3Source {
            endpoint: Endpoint::Custom {
                base: "http://127.0.0.1:5000".into(),
                region: "us-east-1".into(),
            },
            ..s.clone()
        };
        assert_eq!(
            custom.to_string(),
            format!("s3::http://127.0.0.1:5000/acme-modules/tf/vpc/1.2.0.zip//modules/x?region=us-east-1&version=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY&checksum=sha256:{SHA}")
        );
        assert_eq!(s3(&custom.to_string()), custom);
    }

    /// Every form go-getter reads as the same object is read as that object.
    #[test]
    fn every_form_go_getter_reads_names_the_same_object() {
        let want = aws("acme", "tf/vpc/1.0.0.zip");
        for form in [
            "s3::https://acme.s3.eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
            "s3::https://acme.s3-eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
            "s3::https://s3-eu-west-1.amazonaws.com/acme/tf/vpc/1.0.0.zip",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/tf%2Fvpc%2F1.0.0.zip",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/tf/vpc/1%2E0%2E0.zip",
            "https://acme.s3.eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
            "acme.s3-eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
        ] {
            assert_eq!(s3(form), want, "{form}");
        }
        let us = s3("s3::https://s3.amazonaws.com/acme/vpc/1.0.0.zip");
        assert_eq!(
            us.endpoint,
            Endpoint::Aws {
                region: "us-east-1".into()
            }
        );
        let c = s3("s3::http://127.0.0.1:5000/b/tf%2Fvpc%2F1.0.0.zip?region=eu-west-1");
        assert_eq!(
            (c.bucket.as_str(), c.key.as_str()),
            ("b", "tf/vpc/1.0.0.zip")
        );
        assert_eq!(
            c.to_string(),
            "s3::http://127.0.0.1:5000/b/tf/vpc/1.0.0.zip?region=eu-west-1"
        );
        // A key go-getter would read differently is written escaped.
        let odd = S3Source {
            key: "a//b c.zip".into(),
            ..want.clone()
        };
        assert_eq!(s3(&odd.to_string()), odd);
        assert!(odd.to_string().contains("a/%2Fb%20c.zip"));
    }

    #[test]
    fn the_pitfalls_are_refused_with_the_fix() {
        let e = parse("s3::https://s3.eu-west-1.amazonaws.com/acme/vpc/1.0.0.zip").unwrap_err();
        assert!(e.contains("bucket named \"s3\""), "{e}");
        for bad in [
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc.zip?checksum=md5:00",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc.zip?version=1&version=2",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc.zip?archive=false",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/v%zzpc.zip",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_refused_and_never_shown() {
        for s in [
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc.zip?aws_access_key_id=AKIAX&aws_access_key_secret=hunter2",
            "s3::https://AKIAX:hunter2@acme.s3.eu-west-1.amazonaws.com/vpc.zip",
            "s3::http://AKIAX:hunter2@127.0.0.1:5000/b/vpc.zip?region=us-east-1",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc.zip?token=hunter2",
        ] {
            let e = parse(s).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains("AKIAX"), "{e}");
        }
        assert_eq!(
            redact("git::https://deploy:hunter2@example.com/x.git?ref=main&sshkey=abc"),
            "git::https://***@example.com/x.git?ref=main&***"
        );
        // Scheme-less userinfo, bare query keys, unknown pairs: never shown.
        for s in [
            "AKIAX:hunter2@acme.s3-eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip?hunter2",
            "git::https://github.com/acme/x.git?ref=main&hunter2",
            "git::https://github.com/acme/x.git?ref=main&hunter2=1",
        ] {
            assert!(!redact(s).contains("hunter2"), "{s}: {}", redact(s));
            if let Err(e) = parse(s) {
                assert!(!e.contains("hunter2") && !e.contains("AKIAX"), "{e}");
            }
        }
    }

    #[test]
    fn other_sources_are_not_s3() {
        for s in [
            "git::https://example.com/x.git?ref=v1",
            "../modules/vpc",
            "tfr:///terraform-aws-modules/vpc/aws?version=5.0.0",
            "terraform-aws-modules/vpc/aws",
            "https://example.com/vpc.zip",
            "github.com/acme/vpc",
        ] {
            assert_eq!(parse(s).unwrap(), Parsed::Other, "{s}");
        }
    }
}
