//! Reaching Redis: one `--redis-url` for a single node or a cluster (asked on first use, so an
//! ElastiCache configuration endpoint works as given), TLS from the system's roots or
//! `--redis-ca-file` with an optional client certificate, and every failure sorted into one of
//! two kinds: Redis *unavailable* (down, slow, failing over: a claim goes on without it for a
//! while) or Redis *misconfigured* (it answers but can never work: refused credentials, missing
//! ACL permissions, a read-only replica, an untrusted certificate — the command stops at once
//! with exit 2 and what to fix).

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, ErrorKind, RedisError as ClientError, ServerErrorKind, TlsCertificates,
};

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
    client: redis::Client,
    certs: Option<TlsCertificates>,
    shown: String,
    tls: bool,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.shown)
            .finish()
    }
}

/// What the server at `--redis-url` turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One node (with or without replicas behind it).
    Single,
    /// A Redis Cluster: keys are spread over shards by hash slot.
    Cluster,
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

/// A connection to one node (reconnecting) or to a cluster (following its slots).
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) fn topology(&self) -> Topology {
        match self {
            Conn::Single(_) => Topology::Single,
            Conn::Cluster(_) => Topology::Cluster,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connect, ask the server whether it is a cluster, and return the matching connection.
/// Credentials are checked here (the first round trip), so refused ones surface at once.
pub(super) async fn connect(target: &RedisTarget, timeout: Duration) -> Result<Conn, RedisError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut probe = target
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| with_scheme_hint(sort(&e, Topology::Single), target, &e))?;
    let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut probe)
        .await;
    let cluster = match info {
        Ok(_) => true,
        // The server's own answer: "cluster support disabled", an unknown or forbidden CLUSTER
        // command: one node. (A cluster whose user may not run CLUSTER INFO answers MOVED
        // later, which says so.)
        Err(e) if says_single_node(&e) => false,
        // Anything else (refused credentials, a timeout, a dropped connection) decides nothing:
        // the answer is not remembered, and the next call asks again.
        Err(e) => return Err(sort(&e, Topology::Single)),
    };
    if !cluster {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(target.client.clone(), config)
            .map_err(|e| sort(&e, Topology::Single))?;
        return Ok(Conn::Single(manager));
    }
    let mut builder = ClusterClientBuilder::new(vec![target.client.get_connection_info().clone()])
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(20)
        .max_retry_wait(timeout.as_millis() as u64 / 2);
    if let Some(certs) = &target.certs {
        builder = builder.certs(certs.clone());
    }
    let client = builder.build().map_err(|e| sort(&e, Topology::Cluster))?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(|e| sort(&e, Topology::Cluster))?;
    Ok(Conn::Cluster(conn))
}

/// A connection that got no TLS answer, or that the server dropped at once, may be the URL's
/// scheme not matching the port: say so (it stays a passing failure: a slow or flaky network
/// looks the same).
fn with_scheme_hint(sorted: RedisError, target: &RedisTarget, e: &ClientError) -> RedisError {
    let RedisError::Unavailable(text) = sorted else {
        return sorted;
    };
    let hint = if target.tls && (e.is_timeout() || text.contains("timed out")) {
        "; no TLS handshake answer: if this port does not speak TLS, use redis://"
    } else if !target.tls && (e.is_connection_dropped() || text.contains("reset")) {
        "; the server closed the connection: if this port speaks TLS, use rediss://"
    } else {
        ""
    };
    RedisError::Unavailable(format!("{text}{hint}"))
}

/// The role (`master`, `slave`) of the node a fresh connection lands on.
pub(super) async fn role(target: &RedisTarget) -> Result<String, RedisError> {
    let mut c = target
        .client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| sort(&e, Topology::Single))?;
    let answer: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut c)
        .await
        .map_err(|e| sort(&e, Topology::Single))?;
    match answer.first() {
        Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
        _ => Err(RedisError::Unavailable("ROLE gave no role".into())),
    }
}

/// Whether a failed CLUSTER INFO was Redis saying it is not a cluster (or will not say).
fn says_single_node(e: &ClientError) -> bool {
    if is_auth(e) {
        return false;
    }
    let text = e.to_string();
    e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || text.contains("cluster support disabled")
        || text.contains("unknown command")
        || text.contains("unknown subcommand")
}

fn is_auth(e: &ClientError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH") | Some("WRONGPASS"))
}

/// The permissions eipool's Redis user needs, as an ACL rule (README, "Redis").
pub(crate) const ACL_RULE: &str = "~eipool:* +evalsha +eval +script|load +get +mget +hgetall +hdel +ping +cluster|info +cluster|slots +cluster|keyslot +role +set +pexpire +incr +del +exists +hset +time";

/// Sort a Redis failure: misconfiguration (it answers but can never work) or unavailability.
/// `topology` is what the connection is: a READONLY or MOVED answer means a misconfiguration
/// only on a single-node connection (a cluster connection follows them).
pub(super) fn sort(e: &ClientError, topology: Topology) -> RedisError {
    let text = redact_url(&e.to_string());
    let misconfigured = |what: String| RedisError::Misconfigured(what);
    if is_auth(e) {
        return misconfigured(format!(
            "Redis refused the credentials ({text}). Put the user and password in the URL as rediss://USER:PASSWORD@HOST:PORT ({}); ElastiCache: the AUTH token, or the ACL user's password",
            percent_encoding_hint()
        ));
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return misconfigured(format!(
                "the Redis user lacks a permission eipool needs ({text}). Grant it: ACL SETUSER <user> {ACL_RULE}"
            ))
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) if topology == Topology::Single => {
            return misconfigured(format!(
                "--redis-url points at a read-only replica ({text}). Use the primary endpoint (ElastiCache: the primary endpoint, or the configuration endpoint in cluster mode)"
            ))
        }
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
            if topology == Topology::Single =>
        {
            return misconfigured(format!(
                "Redis is a cluster, but it answered CLUSTER INFO with an error, so eipool took it for one node ({text}). Allow the user +cluster|info and +cluster|slots"
            ))
        }
        ErrorKind::InvalidClientConfig => return misconfigured(text),
        _ => {}
    }
    if text.contains("unknown command") {
        return misconfigured(format!(
            "this Redis does not offer a command eipool needs ({text}): eipool needs Lua scripting (EVALSHA, EVAL, SCRIPT LOAD)"
        ));
    }
    if text.contains("invalid peer certificate")
        || text.contains("UnknownIssuer")
        || text.contains("NotValidForName")
    {
        return misconfigured(format!(
            "Redis's TLS certificate is not trusted ({text}). Give the CA that signed it with --redis-ca-file (PEM), and connect by a name the certificate holds"
        ));
    }
    if text.contains("CertificateRequired")
        || text.contains("certificate required")
        || text.contains("BadCertificate")
        || text.contains("UnknownCA")
    {
        return misconfigured(format!(
            "Redis refused our TLS client certificate, or needs one ({text}). Give --redis-client-cert and --redis-client-key signed by the CA Redis trusts"
        ));
    }
    if text.contains("corrupt message") || text.contains("InvalidContentType") {
        return misconfigured(format!(
            "TLS failed ({text}): the port does not speak TLS. Use redis:// for a plain port, rediss:// for a TLS one"
        ));
    }
    RedisError::Unavailable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> ClientError {
        redis::RedisError::from((
            ErrorKind::Server(match code {
                "NOPERM" => ServerErrorKind::NoPerm,
                "READONLY" => ServerErrorKind::ReadOnly,
                "MOVED" => ServerErrorKind::Moved,
                _ => ServerErrorKind::ResponseError,
            }),
            "An error was signalled by the server",
            detail.to_string(),
        ))
    }

    #[test]
    fn answers_that_can_never_work_are_misconfigurations() {
        for (e, topology, says) in [
            (
                server("NOPERM", "no permissions to run the 'evalsha' command"),
                Topology::Single,
                "ACL SETUSER",
            ),
            (server("NOPERM", "x"), Topology::Cluster, "ACL SETUSER"),
            (
                server("READONLY", "You can't write against a read only replica."),
                Topology::Single,
                "primary endpoint",
            ),
            (
                server("MOVED", "3999 127.0.0.1:7001"),
                Topology::Single,
                "+cluster|info",
            ),
            (
                ClientError::from((
                    ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                Topology::Single,
                "credentials",
            ),
            (
                server("ERR", "unknown command 'EVALSHA'"),
                Topology::Single,
                "Lua scripting",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "invalid peer certificate: UnknownIssuer",
                )),
                Topology::Single,
                "--redis-ca-file",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "received fatal alert: CertificateRequired",
                )),
                Topology::Single,
                "--redis-client-cert",
            ),
            (
                ClientError::from(std::io::Error::other(
                    "received corrupt message of type InvalidContentType",
                )),
                Topology::Single,
                "rediss://",
            ),
        ] {
            match sort(&e, topology) {
                RedisError::Misconfigured(m) => assert!(m.contains(says), "{m}"),
                other => panic!("{e} sorted as {other:?}"),
            }
        }
    }

    #[test]
    fn only_the_servers_own_answer_makes_it_one_node() {
        for (e, single) in [
            (
                server("ERR", "This instance has cluster support disabled"),
                true,
            ),
            (server("ERR", "unknown command 'CLUSTER'"), true),
            (
                server("NOPERM", "no permissions to run the 'cluster|info' command"),
                true,
            ),
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                false,
            ),
            (
                ClientError::from((
                    ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                false,
            ),
        ] {
            assert_eq!(says_single_node(&e), single, "{e}");
        }
    }

    #[test]
    fn passing_trouble_is_unavailability() {
        for (e, topology) in [
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                Topology::Single,
            ),
            (
                ClientError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                Topology::Cluster,
            ),
            // A cluster connection follows these itself; what still surfaces is a failover.
            (
                server("READONLY", "You can't write against a read only replica."),
                Topology::Cluster,
            ),
            (server("MOVED", "3999 127.0.0.1:7001"), Topology::Cluster),
        ] {
            assert!(
                matches!(sort(&e, topology), RedisError::Unavailable(_)),
                "{e}"
            );
        }
    }

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
