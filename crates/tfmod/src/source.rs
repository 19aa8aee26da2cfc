//! The module `source` string for Terraform and Terragrunt: go-getter's `s3::` form. Pure.
//!
//! go-getter (`get_s3.go`, `parseUrl`) reads a host under `amazonaws.com` by counting its dot
//! parts: `BUCKET.s3.REGION.amazonaws.com/KEY` (virtual-hosted) and `s3.amazonaws.com/BUCKET/KEY`
//! or `s3-REGION.amazonaws.com/BUCKET/KEY` (path-style) work, but the current path-style host
//! `s3.REGION.amazonaws.com/BUCKET/KEY` is read as bucket `s3` — so tfmod writes the
//! virtual-hosted form, and refuses buckets with dots. Any other host is an S3-compatible
//! endpoint: `s3::http(s)://HOST/BUCKET/KEY?region=R` (path-style; plain http needs go-getter
//! ≥ 1.8.4). Credentials never go into the string (`aws_access_key_id=…` is refused): the
//! reader's AWS credential chain is used.

use std::fmt;

/// Where the bucket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// AWS S3 in `region`.
    Aws { region: String },
    /// An S3-compatible endpoint, `scheme://host[:port]`, path-style.
    Custom { base: String, region: String },
}

/// A parsed `s3::` module source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Source {
    pub endpoint: Endpoint,
    pub bucket: String,
    pub key: String,
    /// A `//subdir` inside the archive (Terraform's module-in-package syntax), without the `//`.
    pub subdir: Option<String>,
}

impl S3Source {
    /// The source without its `//subdir`: what the lock file records (one archive, one hash).
    pub fn archive(&self) -> S3Source {
        S3Source {
            subdir: None,
            ..self.clone()
        }
    }

    /// The same endpoint and bucket, another key (a pin), keeping the subdirectory.
    pub fn with_key(&self, key: &str) -> S3Source {
        S3Source {
            key: key.to_string(),
            ..self.clone()
        }
    }

    /// Parses a source string; `Ok(None)` when it is not an `s3::` source at all (git, registry,
    /// local paths are not tfmod's).
    pub fn parse(s: &str) -> Result<Option<S3Source>, String> {
        let Some(url) = s.strip_prefix("s3::") else {
            return Ok(None);
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{s:?}: expected s3::https://…"))?;
        if scheme != "https" && scheme != "http" {
            return Err(format!("{s:?}: scheme must be https or http"));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (rest, subdir) = match rest.split_once("//") {
            Some((r, sub)) => (r, Some(sub.to_string())),
            None => (rest, None),
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: no object key after the host"))?;
        let mut region = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "region" => region = Some(v.to_string()),
                "aws_access_key_id" | "aws_access_key_secret" | "aws_access_token" => {
                    return Err(format!(
                        "{}: credentials in a module source are refused (use the AWS credential chain)",
                        redact(s)
                    ))
                }
                _ => return Err(format!("{s:?}: query parameter {k:?} is not supported")),
            }
        }
        let (endpoint, bucket, key) = if let Some(h) = host.strip_suffix(".amazonaws.com") {
            let parts: Vec<&str> = h.split('.').collect();
            match parts.as_slice() {
                [bucket, "s3", region] => (
                    Endpoint::Aws {
                        region: region.to_string(),
                    },
                    bucket.to_string(),
                    path.to_string(),
                ),
                [one] if *one == "s3" || one.starts_with("s3-") => {
                    let region = one
                        .strip_prefix("s3-")
                        .unwrap_or("us-east-1")
                        .to_string();
                    let (bucket, key) = path
                        .split_once('/')
                        .ok_or_else(|| format!("{s:?}: no object key after the bucket"))?;
                    (Endpoint::Aws { region }, bucket.to_string(), key.to_string())
                }
                ["s3", region] => {
                    return Err(format!(
                        "{s:?}: go-getter reads host s3.{region}.amazonaws.com as bucket \"s3\"; use https://BUCKET.s3.{region}.amazonaws.com/KEY"
                    ))
                }
                _ => return Err(format!("{s:?}: not an S3 host go-getter understands")),
            }
        } else {
            let (bucket, key) = path
                .split_once('/')
                .ok_or_else(|| format!("{s:?}: expected s3::{scheme}://HOST/BUCKET/KEY"))?;
            (
                Endpoint::Custom {
                    base: format!("{scheme}://{host}"),
                    region: region.clone().unwrap_or_else(|| "us-east-1".to_string()),
                },
                bucket.to_string(),
                key.to_string(),
            )
        };
        if bucket.is_empty() || key.is_empty() {
            return Err(format!("{s:?}: empty bucket or key"));
        }
        Ok(Some(S3Source {
            endpoint,
            bucket,
            key,
            subdir,
        }))
    }
}

impl fmt::Display for S3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sub = match &self.subdir {
            Some(s) => format!("//{s}"),
            None => String::new(),
        };
        match &self.endpoint {
            Endpoint::Aws { region } => write!(
                f,
                "s3::https://{}.s3.{region}.amazonaws.com/{}{sub}",
                self.bucket, self.key
            ),
            Endpoint::Custom { base, region } => write!(
                f,
                "s3::{base}/{}/{}{sub}?region={region}",
                self.bucket, self.key
            ),
        }
    }
}

fn redact(s: &str) -> String {
    match s.split_once('?') {
        Some((head, _)) => format!("{head}?…"),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(bucket: &str, key: &str) -> S3Source {
        S3Source {
            endpoint: Endpoint::Aws {
                region: "eu-west-1".into(),
            },
            bucket: bucket.into(),
            key: key.into(),
            subdir: None,
        }
    }

    #[test]
    fn aws_form_is_virtual_hosted_and_round_trips() {
        let s = aws("acme-modules", "tf/vpc/1.2.0.zip");
        assert_eq!(
            s.to_string(),
            "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip"
        );
        assert_eq!(S3Source::parse(&s.to_string()).unwrap(), Some(s.clone()));
        let mut sub = s.clone();
        sub.subdir = Some("modules/x".into());
        assert_eq!(
            sub.to_string(),
            "s3::https://acme-modules.s3.eu-west-1.amazonaws.com/tf/vpc/1.2.0.zip//modules/x"
        );
        assert_eq!(
            S3Source::parse(&sub.to_string()).unwrap(),
            Some(sub.clone())
        );
        assert_eq!(sub.archive(), s);
    }

    #[test]
    fn path_style_forms_go_getter_reads() {
        let s = S3Source::parse("s3::https://s3-eu-west-1.amazonaws.com/acme/vpc/1.0.0.zip")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.key.as_str()),
            ("acme", "vpc/1.0.0.zip")
        );
        assert_eq!(
            s.endpoint,
            Endpoint::Aws {
                region: "eu-west-1".into()
            }
        );
        let s = S3Source::parse("s3::https://s3.amazonaws.com/acme/vpc/1.0.0.zip")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.endpoint,
            Endpoint::Aws {
                region: "us-east-1".into()
            }
        );
    }

    #[test]
    fn the_pitfalls_are_refused_with_the_fix() {
        let e = S3Source::parse("s3::https://s3.eu-west-1.amazonaws.com/acme/vpc/1.0.0.zip")
            .unwrap_err();
        assert!(e.contains("bucket \"s3\""), "{e}");
        let e = S3Source::parse(
            "s3::https://acme.s3.eu-west-1.amazonaws.com/vpc/1.0.0.zip?aws_access_key_id=AKIA&aws_access_key_secret=x",
        )
        .unwrap_err();
        assert!(e.contains("credentials") && !e.contains("AKIA"), "{e}");
    }

    #[test]
    fn custom_endpoint_is_path_style_with_region() {
        let s = S3Source {
            endpoint: Endpoint::Custom {
                base: "http://127.0.0.1:5000".into(),
                region: "us-east-1".into(),
            },
            bucket: "b".into(),
            key: "vpc/1.0.0.zip".into(),
            subdir: Some("sub".into()),
        };
        assert_eq!(
            s.to_string(),
            "s3::http://127.0.0.1:5000/b/vpc/1.0.0.zip//sub?region=us-east-1"
        );
        assert_eq!(S3Source::parse(&s.to_string()).unwrap(), Some(s));
    }

    #[test]
    fn other_sources_are_not_ours() {
        for s in [
            "git::https://example.com/x.git?ref=v1",
            "../modules/vpc",
            "tfr:///terraform-aws-modules/vpc/aws?version=5.0.0",
        ] {
            assert_eq!(S3Source::parse(s).unwrap(), None, "{s}");
        }
    }
}
