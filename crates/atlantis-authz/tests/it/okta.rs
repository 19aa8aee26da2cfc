//! A fake Okta: users with a GitHub-login profile attribute, their groups (with ids and types)
//! served in pages with `Link` headers, and switches for 429 (with `X-Rate-Limit-Reset`), 5xx,
//! slowness, and the hostile answers an attacker would give: redirects, `next` links to another
//! host, oversized bodies. A second `FakeOkta` on loopback plays the attacker's host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-api-token";

#[derive(Default)]
pub struct Behaviour {
    /// Answer 429 to this many requests first, with a reset one second ahead.
    pub rate_limited: AtomicUsize,
    /// Answer 503 to every request while set.
    pub down: std::sync::atomic::AtomicBool,
    /// Delay every answer by this many milliseconds.
    pub delay_ms: AtomicU64,
    /// The `X-Rate-Limit-Reset` of a 429 (default: one second ahead).
    pub reset_header: Mutex<Option<String>>,
    /// Where the `rel="next"` links of group pages point (default: this server).
    pub next_base: Mutex<Option<String>>,
    /// Answer every request with a 302 to this base URL (same path and query).
    pub redirect_to: Mutex<Option<String>>,
    /// Pad each page of groups with this many bytes of whitespace (still valid JSON).
    pub pad_bytes: AtomicUsize,
    /// Answer without checking credentials, as an attacker's host would.
    pub no_auth: std::sync::atomic::AtomicBool,
    /// Every `Authorization` header received.
    pub auth_seen: Mutex<Vec<String>>,
    /// Answer every request with this, whatever it asks: a hostile or broken Okta.
    pub canned: Mutex<Option<Canned>>,
}

/// A whole answer, as a broken or hostile Okta might give it.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    fn response(&self) -> Response {
        let mut r = Response::new(axum::body::Body::from(self.body.clone()));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                r.headers_mut().append(k, v);
            }
        }
        r
    }
}

pub struct FakeOkta {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    pub behaviour: Arc<Behaviour>,
    stop: CancellationToken,
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An Okta user: (id, login, status ("" = none in the answer), group specs).
type OktaUser = (String, String, String, Vec<String>);

#[derive(Clone)]
struct World {
    /// github login -> user
    users: Arc<BTreeMap<String, OktaUser>>,
    requests: Arc<AtomicUsize>,
    behaviour: Arc<Behaviour>,
    base: Arc<Mutex<String>>,
    page_size: usize,
}

impl FakeOkta {
    /// `users`: (github login, okta login, status, groups). A group is `name` (an `OKTA_GROUP`)
    /// or `TYPE:name` (e.g. `APP_GROUP:infra-prod-admins`); its id is [`group_id`]. A status
    /// of `""` leaves `status` out of the user's JSON.
    pub async fn start(users: &[(&str, &str, &str, &[&str])], page_size: usize) -> FakeOkta {
        let map = users
            .iter()
            .enumerate()
            .map(|(i, (gh, login, status, groups))| {
                (
                    gh.to_string(),
                    (
                        format!("00u{i}"),
                        login.to_string(),
                        status.to_string(),
                        groups.iter().map(|g| g.to_string()).collect(),
                    ),
                )
            })
            .collect();
        let requests = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Behaviour::default());
        let world = World {
            users: Arc::new(map),
            requests: requests.clone(),
            behaviour: behaviour.clone(),
            base: Arc::default(),
            page_size,
        };
        let app = Router::new()
            .route("/api/v1/users", get(search))
            .route("/api/v1/users/{id}", get(user))
            .route("/api/v1/users/{id}/groups", get(groups))
            .route("/oauth2/v1/token", post(token))
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *world.base.lock().unwrap() = url.clone();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        FakeOkta {
            url,
            requests,
            behaviour,
            stop,
        }
    }
}

/// The id of a group spec (`name` or `TYPE:name`): `00g` and 17 more characters, like Okta's.
pub fn group_id(spec: &str) -> String {
    let spec = if spec.contains(':') {
        spec.to_string()
    } else {
        format!("OKTA_GROUP:{spec}")
    };
    let hash: String = Sha256::digest(spec.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("00g{}", &hash[..17])
}

fn group_json(spec: &str) -> Value {
    let (kind, name) = spec.split_once(':').unwrap_or(("OKTA_GROUP", spec));
    json!({"id": group_id(spec), "type": kind, "profile": {"name": name, "description": ""}})
}

/// A 302 to the same path on `to`.
fn redirect(to: &str, uri: &Uri) -> Response {
    let target = format!(
        "{to}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

/// Common gatekeeping: count, delay, redirect, outage, rate limit, auth.
async fn gate(w: &World, h: &HeaderMap, uri: &Uri) -> Option<Response> {
    w.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(a) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        w.behaviour.auth_seen.lock().unwrap().push(a.to_string());
    }
    if let Some(c) = w.behaviour.canned.lock().unwrap().clone() {
        return Some(c.response());
    }
    let delay = w.behaviour.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(to) = w.behaviour.redirect_to.lock().unwrap().clone() {
        return Some(redirect(&to, uri));
    }
    if w.behaviour.down.load(Ordering::SeqCst) {
        return Some((StatusCode::SERVICE_UNAVAILABLE, "down").into_response());
    }
    if w.behaviour.rate_limited.load(Ordering::SeqCst) > 0 {
        w.behaviour.rate_limited.fetch_sub(1, Ordering::SeqCst);
        let reset = w
            .behaviour
            .reset_header
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| {
                (SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 1)
                .to_string()
            });
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"errorCode": "E0000047"})),
        )
            .into_response();
        r.headers_mut()
            .insert("x-rate-limit-reset", HeaderValue::from_str(&reset).unwrap());
        return Some(r);
    }
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("SSWS {TOKEN}")
        && !auth.starts_with("Bearer test-access-token")
        && !w.behaviour.no_auth.load(Ordering::SeqCst)
    {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errorCode": "E0000011"})),
            )
                .into_response(),
        );
    }
    None
}

fn user_json(gh: &str, u: &OktaUser) -> Value {
    let mut user = json!({"id": u.0, "profile": {"login": u.1, "githubUsername": gh}});
    if !u.2.is_empty() {
        user["status"] = json!(u.2);
    }
    user
}

async fn search(
    State(w): State<World>,
    h: HeaderMap,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&w, &h, &uri).await {
        return r;
    }
    // Only the expression atlantis-authz sends: profile.githubUsername eq "<login>".
    let s = q.get("search").cloned().unwrap_or_default();
    let Some(login) = s
        .strip_prefix("profile.githubUsername eq \"")
        .and_then(|r| r.strip_suffix('"'))
    else {
        return (StatusCode::BAD_REQUEST, "unsupported search").into_response();
    };
    let found: Vec<Value> = w
        .users
        .iter()
        .filter(|(gh, _)| gh.as_str() == login)
        .map(|(gh, u)| user_json(gh, u))
        .collect();
    Json(found).into_response()
}

async fn user(State(w): State<World>, h: HeaderMap, uri: Uri, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&w, &h, &uri).await {
        return r;
    }
    match w.users.iter().find(|(_, u)| u.0 == id || u.1 == id) {
        Some((gh, u)) => Json(user_json(gh, u)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errorCode": "E0000007"})),
        )
            .into_response(),
    }
}

async fn groups(
    State(w): State<World>,
    h: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&w, &h, &uri).await {
        return r;
    }
    let Some((_, u)) = w.users.iter().find(|(_, u)| u.0 == id) else {
        return (StatusCode::NOT_FOUND, "no user").into_response();
    };
    let after: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<Value> =
        u.3.iter()
            .skip(after)
            .take(w.page_size)
            .map(|g| group_json(g))
            .collect();
    let pad = " ".repeat(w.behaviour.pad_bytes.load(Ordering::SeqCst));
    let body = format!("{}{pad}", Value::from(page));
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let base = w.base.lock().unwrap().clone();
    let next_base = w
        .behaviour
        .next_base
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| base.clone());
    let self_link = format!(
        "<{base}/api/v1/users/{id}/groups?limit={}>; rel=\"self\"",
        w.page_size
    );
    r.headers_mut()
        .append("link", HeaderValue::from_str(&self_link).unwrap());
    if after + w.page_size < u.3.len() {
        let next = format!(
            "<{next_base}/api/v1/users/{id}/groups?after={}&limit={}>; rel=\"next\"",
            after + w.page_size,
            w.page_size
        );
        r.headers_mut()
            .append("link", HeaderValue::from_str(&next).unwrap());
    }
    r
}

async fn token(State(w): State<World>, uri: Uri, body: String) -> Response {
    w.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(c) = w.behaviour.canned.lock().unwrap().clone() {
        return c.response();
    }
    if let Some(to) = w.behaviour.redirect_to.lock().unwrap().clone() {
        return redirect(&to, &uri);
    }
    let form: BTreeMap<String, String> = url_form(&body);
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && form
            .get("client_assertion")
            .is_some_and(|a| a.split('.').count() == 3);
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    Json(json!({"access_token": "test-access-token", "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

fn url_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.replace('+', " ");
    let bytes = b.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&b[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
