//! The EC2 chaos proxy: an HTTP reverse proxy in front of moto that models what moto lacks —
//! AWS's request throttling, latency, eventual consistency — and injects faults.
//!
//! Point a claimer's `AWS_ENDPOINT_URL` at [`ChaosProxy::endpoint`]. Per request, in order:
//! 1. count it (by action);
//! 2. throttle: token buckets per API class (AWS's documented defaults: mutating actions burst 50,
//!    refill 5/s; non-mutating burst 100, refill 20/s); an empty bucket answers
//!    `RequestLimitExceeded` with HTTP 503 in EC2's XML error shape;
//! 3. wait `latency ± jitter`;
//! 4. faults, each with its probability: a 5xx answer, a connection reset (nothing forwarded),
//!    or "applied but response lost" (forwarded to moto, then the connection is dropped);
//! 5. eventual consistency: after a mutation of an address, DescribeAddresses for that address
//!    answers from the snapshot taken just before the mutation, for `stale_window`; listings
//!    answer from a cached earlier answer of the same query while a mutation is that recent;
//! 6. with `aws_semantics`, what EC2 does and moto does not (see [`ChaosConfig::aws_semantics`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Capacity (and the initial fill).
    pub burst: f64,
    /// Refill rate.
    pub per_second: f64,
}

/// What the proxy does; every knob off by default.
#[derive(Debug, Clone, Default)]
pub struct ChaosConfig {
    /// Throttling of mutating actions (AssociateAddress, DisassociateAddress, …).
    pub mutating: Option<Bucket>,
    /// Throttling of non-mutating actions (Describe*).
    pub non_mutating: Option<Bucket>,
    /// Base latency added to every call.
    pub latency: Duration,
    /// Uniform jitter of ± this much around `latency`.
    pub jitter: Duration,
    /// How long after a mutation Describe* may still show the state from before it.
    pub stale_window: Duration,
    /// Probability of answering a 5xx instead of forwarding.
    pub p_5xx: f64,
    /// Probability of answering `RequestLimitExceeded` whatever the buckets hold (another tool
    /// in the account spending the whole budget).
    pub p_throttle: f64,
    /// Probability of resetting the connection instead of forwarding.
    pub p_reset: f64,
    /// Probability of forwarding, then dropping the answer ("applied but response lost").
    pub p_lose_response: f64,
    /// Faults apply only to these actions (all actions when empty).
    pub fault_actions: HashSet<String>,
    /// Throttling of CreateTags, which has its own bucket in EC2.
    pub create_tags: Option<Bucket>,
    /// Behave as AWS documents where moto does not:
    /// - AssociateAddress to a private IP that already has an Elastic IP disassociates that one
    ///   ("If you associate an Elastic IP address with an instance that has an existing Elastic
    ///   IP address, the existing address is disassociated from the instance, but remains
    ///   allocated to your account":
    ///   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html>);
    ///   moto keeps both.
    /// - TerminateInstances disassociates the Elastic IPs of the interfaces deleted with the
    ///   instance (its primary interface, and any with DeleteOnTermination); stopping keeps them
    ///   (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/elastic-ip-addresses-eip.html>,
    ///   <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html>); moto keeps them.
    /// - DescribeAddresses shows the InstanceId of an association made by interface
    ///   (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Address.html>); moto
    ///   leaves it empty.
    pub aws_semantics: bool,
}

/// AWS's default EC2 bucket for mutating actions (AssociateAddress, DisassociateAddress, …).
pub const AWS_MUTATING: Bucket = Bucket {
    burst: 50.0,
    per_second: 5.0,
};
/// AWS's default EC2 bucket for non-mutating actions (Describe*).
pub const AWS_NON_MUTATING: Bucket = Bucket {
    burst: 100.0,
    per_second: 20.0,
};
/// AWS's default EC2 bucket for CreateTags
/// (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>).
pub const AWS_CREATE_TAGS: Bucket = Bucket {
    burst: 100.0,
    per_second: 10.0,
};

impl ChaosConfig {
    /// AWS's default EC2 request-rate buckets.
    pub fn aws_throttling(mut self) -> Self {
        self.mutating = Some(AWS_MUTATING);
        self.non_mutating = Some(AWS_NON_MUTATING);
        self.create_tags = Some(AWS_CREATE_TAGS);
        self
    }

    /// Only EC2's semantics where moto lacks them: no throttling, latency or faults.
    pub fn aws_like_moto() -> Self {
        ChaosConfig {
            aws_semantics: true,
            ..ChaosConfig::default()
        }
    }
}

#[derive(Debug)]
struct TokenBucket {
    spec: Bucket,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(spec: Bucket) -> Self {
        TokenBucket {
            spec,
            tokens: spec.burst,
            at: Instant::now(),
        }
    }
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.at).as_secs_f64() * self.spec.per_second)
            .min(self.spec.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What happened to calls, by action and outcome (`ok`, `error`, `throttled`, `5xx`, `reset`,
/// `response_lost`, `stale`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats(pub BTreeMap<(String, String), u64>);

impl Stats {
    /// Calls of `action` that ended as `outcome`.
    pub fn get(&self, action: &str, outcome: &str) -> u64 {
        self.0
            .get(&(action.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }
    /// All calls of `action`.
    pub fn calls(&self, action: &str) -> u64 {
        self.0
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
    /// All calls that ended as `outcome`.
    pub fn outcome(&self, outcome: &str) -> u64 {
        self.0
            .iter()
            .filter(|((_, o), _)| o == outcome)
            .map(|(_, n)| n)
            .sum()
    }
    /// One line per action: `Action: ok=… throttled=…`.
    pub fn table(&self) -> String {
        let mut by_action: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((a, o), n) in &self.0 {
            by_action.entry(a).or_default().push(format!("{o}={n}"));
        }
        by_action
            .iter()
            .map(|(a, os)| format!("  {a:<28} {}\n", os.join(" ")))
            .collect()
    }
}

#[derive(Debug)]
struct Snapshot {
    body: Bytes,
    taken: Instant,
}

#[derive(Debug, Default)]
struct State {
    stats: Stats,
    mutating: Option<TokenBucket>,
    non_mutating: Option<TokenBucket>,
    create_tags: Option<TokenBucket>,
    /// Per allocation id: the DescribeAddresses answer from just before its last mutation.
    before_mutation: HashMap<String, Snapshot>,
    /// Per listing query: the last answer moto gave.
    listings: HashMap<String, Snapshot>,
    last_mutation: Option<Instant>,
}

struct Shared {
    config: Mutex<ChaosConfig>,
    state: Mutex<State>,
    upstream: String,
    /// moto serves one request at a time (it is CPU-bound in one Python process); EC2 does not
    /// slow down under concurrency. Requests queue here instead, and a request whose client hung
    /// up while queued is dropped with its connection, never reaching moto.
    slots: tokio::sync::Semaphore,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    /// AWS semantics: one AssociateAddress (and its displacement) at a time, so the last
    /// association to a private IP wins, as in EC2.
    associating: tokio::sync::Mutex<()>,
}

/// A running chaos proxy; stops when dropped.
pub struct ChaosProxy {
    /// `http://127.0.0.1:PORT`: give this to claimers as `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl ChaosProxy {
    /// Start a proxy to moto at `upstream` on a free loopback port.
    pub async fn start(upstream: &str, config: ChaosConfig) -> Result<ChaosProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mutating: config.mutating.map(TokenBucket::new),
                non_mutating: config.non_mutating.map(TokenBucket::new),
                create_tags: config.create_tags.map(TokenBucket::new),
                ..State::default()
            }),
            config: Mutex::new(config),
            upstream: upstream.trim_end_matches('/').to_string(),
            slots: tokio::sync::Semaphore::new(2),
            client: Client::builder(TokioExecutor::new()).build_http(),
            associating: tokio::sync::Mutex::new(()),
        });
        let stop = CancellationToken::new();
        let (s, st) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    // An Err from the service makes hyper drop the connection without answering:
                    // that is how resets and lost answers are injected.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(ChaosProxy {
            endpoint: format!("http://{addr}"),
            shared,
            stop,
        })
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.state.lock().unwrap().stats.clone()
    }

    /// Change the configuration from now on (buckets keep their current fill).
    pub fn reconfigure(&self, f: impl FnOnce(&mut ChaosConfig)) {
        f(&mut self.shared.config.lock().unwrap());
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The proxy's own failure, which makes hyper drop the connection.
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the chaos proxy")
    }
}
impl std::error::Error for Dropped {}

fn is_mutating(action: &str) -> bool {
    !(action.starts_with("Describe") || action.starts_with("Get") || action.starts_with("List"))
}

fn error_xml(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>chaos-{}</RequestID></Response>",
        rand::rng().random::<u32>()
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn xml(body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml")
        .body(Full::new(body))
        .unwrap()
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// The top-level `<item>`s of the list `<set>` in an EC2 XML answer (items nest: an interface's
/// groups and private IPs are items too).
fn xml_items<'a>(xml: &'a str, set: &str) -> Vec<&'a str> {
    let Some(body) = xml_field(xml, set) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let (mut depth, mut start, mut at) = (0usize, 0usize, 0usize);
    while let Some(i) = body[at..].find("<item>").map(|i| i + at) {
        let close = body[at..].find("</item>").map(|c| c + at);
        match close {
            Some(c) if c < i => {
                depth -= 1;
                if depth == 0 {
                    items.push(&body[start..c]);
                }
                at = c + "</item>".len();
            }
            _ => {
                if depth == 0 {
                    start = i + "<item>".len();
                }
                depth += 1;
                at = i + "<item>".len();
            }
        }
    }
    while let Some(c) = body[at..].find("</item>").map(|c| c + at) {
        depth = depth.saturating_sub(1);
        if depth == 0 {
            items.push(&body[start..c]);
        }
        at = c + "</item>".len();
    }
    items
}

fn describe_form(params: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "DescribeAddresses")
        .append_pair("Version", "2016-11-15");
    for (k, v) in params {
        form.append_pair(k, v);
    }
    form.finish()
}

/// The dice of one request, thrown up front (the thread-local RNG can't cross an await).
struct Dice {
    delay: Duration,
    throttle: bool,
    fail_5xx: bool,
    reset: bool,
    lose: bool,
}

fn throw(config: &ChaosConfig, action: &str) -> Dice {
    let mut rng = rand::rng();
    let j = config.jitter.as_secs_f64();
    let delay = Duration::from_secs_f64(
        (config.latency.as_secs_f64()
            + if j > 0.0 {
                rng.random_range(-j..=j)
            } else {
                0.0
            })
        .max(0.0),
    );
    let faulty = config.fault_actions.is_empty() || config.fault_actions.contains(action);
    Dice {
        delay,
        throttle: faulty && rng.random_bool(config.p_throttle.clamp(0.0, 1.0)),
        fail_5xx: faulty && rng.random_bool(config.p_5xx.clamp(0.0, 1.0)),
        reset: faulty && rng.random_bool(config.p_reset.clamp(0.0, 1.0)),
        lose: faulty && rng.random_bool(config.p_lose_response.clamp(0.0, 1.0)),
    }
}

impl Shared {
    fn count(&self, action: &str, outcome: &str) {
        *self
            .state
            .lock()
            .unwrap()
            .stats
            .0
            .entry((action.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    async fn forward(
        &self,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Dropped> {
        let _slot = self.slots.acquire().await.map_err(|_| Dropped)?;
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("{}/", self.upstream));
        for (k, v) in headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .map_err(|_| Dropped)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Dropped)?
            .to_bytes();
        Ok((status, bytes))
    }

    /// DescribeAddresses straight from moto, for the proxy's own snapshots.
    async fn describe(&self, headers: &hyper::HeaderMap, params: &[(&str, &str)]) -> Option<Bytes> {
        let form = describe_form(params);
        match self.forward(headers, Bytes::from(form)).await {
            Ok((s, b)) if s.is_success() => Some(b),
            _ => None,
        }
    }

    /// Before a mutation of an address: remember how it looked, for stale reads after it.
    async fn snapshot_before(
        &self,
        headers: &hyper::HeaderMap,
        action: &str,
        params: &HashMap<String, String>,
    ) {
        let snap = match action {
            "AssociateAddress" => match params.get("AllocationId") {
                Some(a) => self
                    .describe(headers, &[("AllocationId.1", a)])
                    .await
                    .map(|b| (a.clone(), b)),
                None => None,
            },
            "DisassociateAddress" => match params.get("AssociationId") {
                Some(x) => {
                    let b = self
                        .describe(
                            headers,
                            &[("Filter.1.Name", "association-id"), ("Filter.1.Value.1", x)],
                        )
                        .await;
                    b.and_then(|b| {
                        let alloc =
                            xml_field(&String::from_utf8_lossy(&b), "allocationId")?.to_string();
                        Some((alloc, b))
                    })
                }
                None => None,
            },
            _ => None,
        };
        let mut st = self.state.lock().unwrap();
        st.last_mutation = Some(Instant::now());
        if let Some((alloc, body)) = snap {
            st.before_mutation.insert(
                alloc,
                Snapshot {
                    body,
                    taken: Instant::now(),
                },
            );
        }
    }

    /// One EC2 query straight to moto (the proxy's own, not counted), its body when it succeeded.
    async fn query(
        &self,
        headers: &hyper::HeaderMap,
        action: &str,
        params: &[(&str, &str)],
    ) -> Option<String> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action)
                .append_pair("Version", "2016-11-15");
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        match self.forward(headers, Bytes::from(body)).await {
            Ok((s, b)) if s.is_success() => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }

    /// AWS semantics, after an AssociateAddress succeeded: every other Elastic IP on the same
    /// private IP is disassociated (it stays allocated).
    async fn displace_others(&self, headers: &hyper::HeaderMap, params: &HashMap<String, String>) {
        let (Some(alloc), Some(eni)) =
            (params.get("AllocationId"), params.get("NetworkInterfaceId"))
        else {
            return;
        };
        let private_ip = match params.get("PrivateIpAddress") {
            Some(ip) => ip.clone(),
            None => {
                let Some(x) = self
                    .query(
                        headers,
                        "DescribeNetworkInterfaces",
                        &[("NetworkInterfaceId.1", eni)],
                    )
                    .await
                else {
                    return;
                };
                match xml_field(&x, "privateIpAddress") {
                    Some(ip) => ip.to_string(),
                    None => return,
                }
            }
        };
        let Some(held) = self
            .query(
                headers,
                "DescribeAddresses",
                &[
                    ("Filter.1.Name", "network-interface-id"),
                    ("Filter.1.Value.1", eni),
                    ("Filter.2.Name", "private-ip-address"),
                    ("Filter.2.Value.1", &private_ip),
                ],
            )
            .await
        else {
            return;
        };
        for item in xml_items(&held, "addressesSet") {
            if xml_field(item, "allocationId") == Some(alloc.as_str()) {
                continue;
            }
            if let Some(assoc) = xml_field(item, "associationId") {
                self.query(headers, "DisassociateAddress", &[("AssociationId", assoc)])
                    .await;
                self.count("AssociateAddress", "displaced");
            }
        }
    }

    /// AWS semantics, before a TerminateInstances: the associations of the Elastic IPs on the
    /// interfaces that die with the instances (device index 0, or DeleteOnTermination).
    async fn addresses_dying_with(
        &self,
        headers: &hyper::HeaderMap,
        params: &HashMap<String, String>,
    ) -> Vec<String> {
        let mut dying = Vec::new();
        for (k, instance) in params {
            if !k.starts_with("InstanceId.") {
                continue;
            }
            let Some(ifaces) = self
                .query(
                    headers,
                    "DescribeNetworkInterfaces",
                    &[
                        ("Filter.1.Name", "attachment.instance-id"),
                        ("Filter.1.Value.1", instance),
                    ],
                )
                .await
            else {
                continue;
            };
            for item in xml_items(&ifaces, "networkInterfaceSet") {
                let primary = xml_field(item, "deviceIndex") == Some("0");
                let deleted = xml_field(item, "deleteOnTermination") == Some("true");
                // The interface's own id: the item's last networkInterfaceId (moto puts the
                // attachment first, and nothing in it names the interface).
                let Some(eni) = item
                    .rfind("<networkInterfaceId>")
                    .and_then(|i| xml_field(&item[i..], "networkInterfaceId"))
                else {
                    continue;
                };
                if !(primary || deleted) {
                    continue;
                }
                if let Some(held) = self
                    .query(
                        headers,
                        "DescribeAddresses",
                        &[
                            ("Filter.1.Name", "network-interface-id"),
                            ("Filter.1.Value.1", eni),
                        ],
                    )
                    .await
                {
                    dying.extend(
                        xml_items(&held, "addressesSet")
                            .into_iter()
                            .filter_map(|i| xml_field(i, "associationId"))
                            .map(str::to_string),
                    );
                }
            }
        }
        dying
    }

    async fn disassociate_all(&self, headers: &hyper::HeaderMap, associations: &[String]) {
        for assoc in associations {
            self.query(headers, "DisassociateAddress", &[("AssociationId", assoc)])
                .await;
            self.count("TerminateInstances", "disassociated");
        }
    }

    /// AWS semantics: fill in the InstanceId of interface associations, as EC2 shows it.
    async fn with_instance_ids(&self, headers: &hyper::HeaderMap, body: Bytes) -> Bytes {
        let text = String::from_utf8_lossy(&body).into_owned();
        if !text.contains("<instanceId/>") {
            return body;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find("<instanceId/>") {
            let (before, after) = rest.split_at(at);
            // The interface of this item: the last one named before its empty instanceId.
            let eni = before
                .rfind("<item>")
                .and_then(|i| xml_field(&before[i..], "networkInterfaceId"));
            let instance = match eni {
                Some(eni) => self.instance_of(headers, eni).await,
                None => None,
            };
            out.push_str(before);
            match instance {
                Some(i) => out.push_str(&format!("<instanceId>{i}</instanceId>")),
                None => out.push_str("<instanceId/>"),
            }
            rest = &after["<instanceId/>".len()..];
        }
        out.push_str(rest);
        Bytes::from(out)
    }

    /// The instance an interface is attached to, per moto.
    async fn instance_of(&self, headers: &hyper::HeaderMap, eni: &str) -> Option<String> {
        let x = self
            .query(
                headers,
                "DescribeNetworkInterfaces",
                &[("NetworkInterfaceId.1", eni)],
            )
            .await?;
        Some(xml_field(xml_field(&x, "attachment")?, "instanceId")?.to_string())
    }

    /// A stale answer for a Describe, if the model says this read is stale.
    fn stale_answer(
        &self,
        key: &str,
        params: &HashMap<String, String>,
        window: Duration,
    ) -> Option<Bytes> {
        let st = self.state.lock().unwrap();
        let by_id = params.len() == 3 && params.contains_key("AllocationId.1");
        if by_id {
            let snap = st.before_mutation.get(&params["AllocationId.1"])?;
            return (snap.taken.elapsed() < window).then(|| snap.body.clone());
        }
        let recent_mutation = st.last_mutation.is_some_and(|t| t.elapsed() < window);
        let cached = st.listings.get(key)?;
        (recent_mutation && cached.taken.elapsed() < window).then(|| cached.body.clone())
    }
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|_| Dropped)?
        .to_bytes();
    let params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = params
        .get("Action")
        .cloned()
        .unwrap_or_else(|| "Unknown".into());
    let config = s.config.lock().unwrap().clone();
    let dice = throw(&config, &action);

    // Throttling.
    let allowed = {
        let mut st = s.state.lock().unwrap();
        let bucket = if action == "CreateTags" && st.create_tags.is_some() {
            st.create_tags.as_mut()
        } else if is_mutating(&action) {
            st.mutating.as_mut()
        } else {
            st.non_mutating.as_mut()
        };
        !dice.throttle && bucket.is_none_or(|b| b.take())
    };
    if !allowed {
        s.count(&action, "throttled");
        return Ok(error_xml(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ));
    }

    // Latency.
    if !dice.delay.is_zero() {
        tokio::time::sleep(dice.delay).await;
    }

    // Faults.
    if dice.fail_5xx {
        s.count(&action, "5xx");
        return Ok(error_xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred (injected).",
        ));
    }
    if dice.reset {
        s.count(&action, "reset");
        return Err(Dropped);
    }

    // Eventual consistency.
    let key = {
        let mut sorted: Vec<_> = params.iter().collect();
        sorted.sort();
        format!("{sorted:?}")
    };
    let window = config.stale_window;
    if !window.is_zero() {
        if is_mutating(&action) {
            s.snapshot_before(&headers, &action, &params).await;
        } else if action == "DescribeAddresses" {
            if let Some(stale) = s.stale_answer(&key, &params, window) {
                s.count(&action, "stale");
                return Ok(xml(stale));
            }
        }
    }

    let aws = config.aws_semantics && !params.contains_key("DryRun");
    let _one_at_a_time = match action.as_str() {
        "AssociateAddress" if aws => Some(s.associating.lock().await),
        _ => None,
    };
    let dying = match action.as_str() {
        "TerminateInstances" if aws => s.addresses_dying_with(&headers, &params).await,
        _ => Vec::new(),
    };
    let (status, mut bytes) = match s.forward(&headers, body.clone()).await {
        Ok(r) => r,
        Err(e) => {
            s.count(&action, "upstream_failed");
            return Err(e);
        }
    };
    if aws && status.is_success() {
        match action.as_str() {
            "AssociateAddress" => s.displace_others(&headers, &params).await,
            "TerminateInstances" => s.disassociate_all(&headers, &dying).await,
            "DescribeAddresses" => bytes = s.with_instance_ids(&headers, bytes).await,
            _ => {}
        }
    }
    if !window.is_zero() && action == "DescribeAddresses" && status.is_success() {
        s.state.lock().unwrap().listings.insert(
            key,
            Snapshot {
                body: bytes.clone(),
                taken: Instant::now(),
            },
        );
    }
    if dice.lose {
        s.count(&action, "response_lost");
        return Err(Dropped);
    }
    s.count(&action, if status.is_success() { "ok" } else { "error" });
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(bytes))
        .unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let mut b = TokenBucket::new(Bucket {
            burst: 3.0,
            per_second: 0.001,
        });
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[test]
    fn fields_are_read_from_ec2_xml() {
        let x = "<DescribeAddressesResponse><addressesSet><item><allocationId>eipalloc-1</allocationId></item></addressesSet></DescribeAddressesResponse>";
        assert_eq!(xml_field(x, "allocationId"), Some("eipalloc-1"));
        assert_eq!(xml_field(x, "associationId"), None);
    }

    #[test]
    fn items_of_an_ec2_list_are_read_one_by_one() {
        let x = "<addressesSet><item><allocationId>eipalloc-1</allocationId><associationId>eipassoc-1</associationId></item><item><allocationId>eipalloc-2</allocationId></item></addressesSet>";
        let items: Vec<(Option<&str>, Option<&str>)> = xml_items(x, "addressesSet")
            .into_iter()
            .map(|i| (xml_field(i, "allocationId"), xml_field(i, "associationId")))
            .collect();
        assert_eq!(
            items,
            vec![
                (Some("eipalloc-1"), Some("eipassoc-1")),
                (Some("eipalloc-2"), None)
            ]
        );
        let nested = "<networkInterfaceSet><item><attachment><deviceIndex>0</deviceIndex></attachment><groupSet><item><groupId>sg-1</groupId></item></groupSet><networkInterfaceId>eni-1</networkInterfaceId></item><item><networkInterfaceId>eni-2</networkInterfaceId></item></networkInterfaceSet>";
        let items = xml_items(nested, "networkInterfaceSet");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(xml_field(items[0], "deviceIndex"), Some("0"));
        assert!(items[0].ends_with("<networkInterfaceId>eni-1</networkInterfaceId>"));
        assert_eq!(xml_field(items[1], "networkInterfaceId"), Some("eni-2"));
    }

    #[test]
    fn describe_calls_are_not_mutating() {
        assert!(!is_mutating("DescribeAddresses"));
        assert!(is_mutating("AssociateAddress"));
        assert!(is_mutating("DisassociateAddress"));
    }
}
