//! Where Redis is: `--redis-url` and the TLS files (`--redis-ca-file`, a client certificate
//! and key) checked and read without connecting. Errors name the flag and never the password.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, RedisError as ClientError, TlsCertificates};

use super::RedisError;
use crate::pure::secret::{percent_encoding_hint, redact_url};

/// TLS material for a `rediss://` URL, as the files the command line names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the CA certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain), for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// Where Redis is and how to reach it, checked without connecting.
#[derive(Clone)]
pub struct RedisTarget {
    pub(super) client: redis::Client,
    pub(super) certs: Option<TlsCertificates>,
    pub(super) shown: String,
    pub(super) tls: bool,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.shown)
            .finish()
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, RedisError> {
    let bytes = std::fs::read(path)
        .map_err(|e| RedisError::BadTls(format!("{flag} {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(RedisError::BadTls(format!(
            "{flag} {}: no PEM block in it; give a PEM file (-----BEGIN ...)",
            path.display()
        )));
    }
    Ok(bytes)
}

impl RedisTarget {
    /// Parse `--redis-url` and read the TLS files, without connecting. Errors name the flag.
    pub fn parse(url: &str, tls: &TlsFiles) -> Result<RedisTarget, RedisError> {
        let shown = redact_url(url);
        let tls_url = url.starts_with("rediss://");
        if !(url.starts_with("redis://") || tls_url || url.starts_with("redis+unix://")) {
            return Err(RedisError::BadUrl(format!(
                "{shown:?} has no redis:// or rediss:// scheme"
            )));
        }
        if url.ends_with("#insecure") {
            return Err(RedisError::BadUrl(format!(
                "{shown:?} asks to skip TLS certificate verification (#insecure), which eipool never does; drop it and give the CA that signed Redis's certificate with --redis-ca-file"
            )));
        }
        let parse_error = |e: ClientError| {
            RedisError::BadUrl(format!(
                "{shown:?} did not parse ({}); {}",
                redact_url(&e.to_string()),
                percent_encoding_hint()
            ))
        };
        if tls.any() && !tls_url {
            return Err(RedisError::BadTls(format!(
                "--redis-ca-file, --redis-client-cert and --redis-client-key need a rediss:// URL, not {shown:?}"
            )));
        }
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(RedisError::BadTls(
                "--redis-client-cert and --redis-client-key go together: give both, or neither"
                    .into(),
            ));
        }
        install_crypto_provider();
        if !tls.any() {
            let client = redis::Client::open(url).map_err(parse_error)?;
            return Ok(RedisTarget {
                client,
                certs: None,
                shown,
                tls: tls_url,
            });
        }
        let root_cert = tls
            .ca
            .as_deref()
            .map(|p| read("--redis-ca-file", p))
            .transpose()?;
        let client_tls = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("--redis-client-cert", cert)?,
                client_key: read("--redis-client-key", key)?,
            }),
            _ => None,
        };
        let certs = TlsCertificates {
            client_tls,
            root_cert,
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(parse_error)?;
        let client = redis::Client::build_with_tls(info, certs.clone()).map_err(|e| {
            RedisError::BadTls(format!(
                "--redis-ca-file/--redis-client-cert/--redis-client-key: {e}"
            ))
        })?;
        Ok(RedisTarget {
            client,
            certs: Some(certs),
            shown,
            tls: true,
        })
    }

    /// The URL with its password redacted, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// More than one rustls crypto backend is compiled in (the AWS SDK's and others'), so rustls
/// cannot pick one by itself and would panic on the first TLS connection: pick aws-lc-rs, once.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_name_the_flag_and_never_the_password() {
        for url in [
            "redis://user:pa#ss@host:6379",
            "http://user:pa#ss@host",
            "redis://user:pa#ss@",
        ] {
            let e = RedisTarget::parse(url, &TlsFiles::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("--redis-url"), "{e}");
            assert!(!e.contains("pa#ss"), "{e}");
        }
        let e = RedisTarget::parse("rediss://host:6379/#insecure", &TlsFiles::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--redis-ca-file"), "{e}");
        let e = RedisTarget::parse("redis://user:pa#ss@host:6379", &TlsFiles::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("%23"), "{e}");
    }

    #[test]
    fn tls_files_need_rediss_and_come_in_pairs() {
        let ca = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let e = RedisTarget::parse("redis://h:1", &ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rediss://"), "{e}");
        let e = RedisTarget::parse("rediss://h:1", &ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--redis-ca-file /nonexistent/ca.pem"), "{e}");
        let half = TlsFiles {
            client_cert: Some("/c.pem".into()),
            ..TlsFiles::default()
        };
        let e = RedisTarget::parse("rediss://h:1", &half)
            .unwrap_err()
            .to_string();
        assert!(e.contains("go together"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = RedisTarget::parse(
            "rediss://h:1",
            &TlsFiles {
                ca: Some(not_pem),
                ..TlsFiles::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no PEM block"), "{e}");
    }
}
