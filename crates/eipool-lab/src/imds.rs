//! A small IMDSv2 stub: token first (PUT), then metadata with that token; tells one instance's
//! id, MAC and interface id. moto's own IMDS answers static values, so tests run this instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "eipool-lab-imds-token";

#[derive(Debug)]
struct Stub {
    instance_id: String,
    mac: String,
    eni: String,
    local_ipv4: String,
    token_requests: AtomicUsize,
}

/// A running stub; stops when dropped.
#[derive(Debug)]
pub struct ImdsStub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    stub: Arc<Stub>,
    stop: CancellationToken,
}

impl ImdsStub {
    /// Serve the metadata of one instance (its primary interface `eni` with primary private IP
    /// `local_ipv4`) on a free loopback port.
    pub async fn start(
        instance_id: &str,
        mac: &str,
        eni: &str,
        local_ipv4: &str,
    ) -> std::io::Result<ImdsStub> {
        let stub = Arc::new(Stub {
            instance_id: instance_id.into(),
            mac: mac.into(),
            eni: eni.into(),
            local_ipv4: local_ipv4.into(),
            token_requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/latest/api/token", put(token))
            .route(
                "/latest/meta-data/instance-id",
                get(|s, h| meta(s, h, |s| s.instance_id.clone())),
            )
            .route(
                "/latest/meta-data/mac",
                get(|s, h| meta(s, h, |s| s.mac.clone())),
            )
            .route(
                "/latest/meta-data/local-ipv4",
                get(|s, h| meta(s, h, |s| s.local_ipv4.clone())),
            )
            .route(
                "/latest/meta-data/network/interfaces/macs/{mac}/interface-id",
                get(interface_id),
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

async fn meta(
    State(s): State<Arc<Stub>>,
    h: HeaderMap,
    f: fn(&Stub) -> String,
) -> (StatusCode, String) {
    if !authorized(&h) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (StatusCode::OK, f(&s))
}

async fn interface_id(
    State(s): State<Arc<Stub>>,
    Path(mac): Path<String>,
    h: HeaderMap,
) -> (StatusCode, String) {
    if !authorized(&h) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    if mac != s.mac {
        return (StatusCode::NOT_FOUND, String::new());
    }
    (StatusCode::OK, s.eni.clone())
}
