//! A small IMDSv2 stub: token first (PUT), then metadata with that token. It tells one
//! instance's id, MAC, interface and private IP, and answers the node's public addresses
//! (`public-ipv4`, `public-ipv4s`, `ipv4-associations`) from moto's current state, as IMDS on
//! EC2 answers from the node's. moto's own IMDS is static, so tests run this instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::fixture::Ec2Lab;

const TOKEN: &str = "eipool-lab-imds-token";

#[derive(Debug)]
struct Stub {
    instance_id: String,
    mac: String,
    eni: String,
    local_ipv4: String,
    /// Where the node's public addresses are read from (moto, directly).
    ec2: Ec2Lab,
    token_requests: AtomicUsize,
    /// Lookups of the node's public addresses.
    public_requests: AtomicUsize,
    /// While set, lookups of the node's public addresses never answer (a wedged IMDS).
    wedged: AtomicBool,
}

/// A running stub; stops when dropped.
#[derive(Debug)]
pub struct ImdsStub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    stub: Arc<Stub>,
    stop: CancellationToken,
}

/// The node: its instance, the MAC and id of its primary interface, and that interface's
/// primary private IP.
#[derive(Debug, Clone)]
pub struct NodeMeta<'a> {
    /// `i-…`.
    pub instance_id: &'a str,
    /// The primary interface's MAC.
    pub mac: &'a str,
    /// `eni-…`.
    pub eni: &'a str,
    /// The primary private IP.
    pub local_ipv4: &'a str,
}

type Answer = (StatusCode, String);

impl ImdsStub {
    /// Serve `node`'s metadata on a free loopback port, its public addresses read from `ec2`.
    pub async fn start(node: NodeMeta<'_>, ec2: &Ec2Lab) -> std::io::Result<ImdsStub> {
        let stub = Arc::new(Stub {
            instance_id: node.instance_id.into(),
            mac: node.mac.into(),
            eni: node.eni.into(),
            local_ipv4: node.local_ipv4.into(),
            ec2: ec2.clone(),
            token_requests: AtomicUsize::new(0),
            public_requests: AtomicUsize::new(0),
            wedged: AtomicBool::new(false),
        });
        let macs = "/latest/meta-data/network/interfaces/macs/{mac}";
        let app = Router::new()
            .route("/latest/api/token", put(token))
            .route(
                "/latest/meta-data/instance-id",
                get(|s, h| fixed(s, h, |s| s.instance_id.clone())),
            )
            .route(
                "/latest/meta-data/mac",
                get(|s, h| fixed(s, h, |s| s.mac.clone())),
            )
            .route(
                "/latest/meta-data/local-ipv4",
                get(|s, h| fixed(s, h, |s| s.local_ipv4.clone())),
            )
            .route("/latest/meta-data/public-ipv4", get(public_ipv4))
            .route(&format!("{macs}/interface-id"), get(interface_id))
            .route(&format!("{macs}/public-ipv4s"), get(public_ipv4s))
            .route(&format!("{macs}/ipv4-associations/"), get(associations))
            .route(
                &format!("{macs}/ipv4-associations/{{ip}}"),
                get(association),
            )
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Ok(ImdsStub {
            endpoint: format!("http://{addr}"),
            stub,
            stop,
        })
    }

    /// How many IMDSv2 session tokens were requested.
    pub fn token_requests(&self) -> usize {
        self.stub.token_requests.load(Ordering::SeqCst)
    }

    /// How many lookups of the node's public addresses arrived (answered or not).
    pub fn public_requests(&self) -> usize {
        self.stub.public_requests.load(Ordering::SeqCst)
    }

    /// While `on`, lookups of the node's public addresses hang instead of answering, as a
    /// wedged IMDS does; the identity paths still answer.
    pub fn wedge_public_addresses(&self, on: bool) {
        self.stub.wedged.store(on, Ordering::SeqCst);
    }
}

impl Drop for ImdsStub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn token(State(s): State<Arc<Stub>>, h: HeaderMap) -> (StatusCode, HeaderMap, String) {
    let mut out = HeaderMap::new();
    let Some(ttl) = h.get("x-aws-ec2-metadata-token-ttl-seconds").cloned() else {
        return (StatusCode::BAD_REQUEST, out, "missing ttl header".into());
    };
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    out.insert("x-aws-ec2-metadata-token-ttl-seconds", ttl);
    (StatusCode::OK, out, TOKEN.into())
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        == Some(TOKEN)
}

/// The answer for a path of the node's own interface, or 401/404.
fn checked(h: &HeaderMap, s: &Stub, mac: Option<&str>) -> Result<(), Answer> {
    if !authorized(h) {
        return Err((StatusCode::UNAUTHORIZED, String::new()));
    }
    if mac.is_some_and(|m| m != s.mac) {
        return Err((StatusCode::NOT_FOUND, String::new()));
    }
    Ok(())
}

async fn fixed(State(s): State<Arc<Stub>>, h: HeaderMap, f: fn(&Stub) -> String) -> Answer {
    match checked(&h, &s, None) {
        Ok(()) => (StatusCode::OK, f(&s)),
        Err(e) => e,
    }
}

async fn interface_id(State(s): State<Arc<Stub>>, Path(mac): Path<String>, h: HeaderMap) -> Answer {
    match checked(&h, &s, Some(&mac)) {
        Ok(()) => (StatusCode::OK, s.eni.clone()),
        Err(e) => e,
    }
}

/// `(public, private)` of every Elastic IP on the node's interface, per moto now.
async fn mappings(s: &Stub) -> Result<Vec<(String, String)>, Answer> {
    s.public_requests.fetch_add(1, Ordering::SeqCst);
    if s.wedged.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let held = s
        .ec2
        .addresses_on(&s.eni)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(held
        .into_iter()
        .filter_map(|e| Some((e.public_ip, e.private_ip?)))
        .collect())
}

/// A listing, or 404 when empty (as IMDS answers for a directory with nothing in it).
fn listing(lines: Vec<String>) -> Answer {
    if lines.is_empty() {
        (StatusCode::NOT_FOUND, String::new())
    } else {
        (StatusCode::OK, lines.join("\n"))
    }
}

async fn public_ipv4(State(s): State<Arc<Stub>>, h: HeaderMap) -> Answer {
    if let Err(e) = checked(&h, &s, None) {
        return e;
    }
    match mappings(&s).await {
        Ok(m) => listing(
            m.into_iter()
                .filter(|(_, private)| *private == s.local_ipv4)
                .map(|(public, _)| public)
                .take(1)
                .collect(),
        ),
        Err(e) => e,
    }
}

async fn public_ipv4s(State(s): State<Arc<Stub>>, Path(mac): Path<String>, h: HeaderMap) -> Answer {
    if let Err(e) = checked(&h, &s, Some(&mac)) {
        return e;
    }
    match mappings(&s).await {
        Ok(m) => listing(m.into_iter().map(|(public, _)| public).collect()),
        Err(e) => e,
    }
}

async fn associations(State(s): State<Arc<Stub>>, Path(mac): Path<String>, h: HeaderMap) -> Answer {
    public_ipv4s(State(s), Path(mac), h).await
}

async fn association(
    State(s): State<Arc<Stub>>,
    Path((mac, ip)): Path<(String, String)>,
    h: HeaderMap,
) -> Answer {
    if let Err(e) = checked(&h, &s, Some(&mac)) {
        return e;
    }
    match mappings(&s).await {
        Ok(m) => match m.into_iter().find(|(public, _)| *public == ip) {
            Some((_, private)) => (StatusCode::OK, private),
            None => (StatusCode::NOT_FOUND, String::new()),
        },
        Err(e) => e,
    }
}
