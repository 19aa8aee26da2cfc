//! The EC2 chaos proxy: an HTTP reverse proxy in front of moto that models what moto lacks —
//! AWS's request throttling, latency, eventual consistency — and injects faults.
//!
//! Point a claimer's `AWS_ENDPOINT_URL` at [`ChaosProxy::endpoint`]. Per request, in order:
//! 1. count it (by action);
//! 2. throttle: a token bucket per action, sized by its class (AWS's documented defaults:
//!    mutating actions burst 50, refill 5/s; non-mutating burst 100, refill 20/s; CreateTags
//!    100, 10/s); an empty bucket answers
//!    `RequestLimitExceeded` with HTTP 503 in EC2's XML error shape;
//! 3. wait `latency ± jitter`;
//! 4. faults, each with its probability: a 5xx answer, a connection reset (nothing forwarded),
//!    or "applied but response lost" (forwarded to moto, then the connection is dropped);
//! 5. eventual consistency: after a mutation of an address, DescribeAddresses for that address
//!    answers from the snapshot taken just before the mutation, for `stale_window`; listings
//!    answer from a cached earlier answer of the same query while a mutation is that recent;
//! 6. with `aws_semantics`, what EC2 does and moto does not (see [`ChaosConfig::aws_semantics`]).
//!
//! One concept per file: [`throttle`] (EC2's buckets), [`background`] (another caller drawing
//! from them), [`faults`] (the dice), [`stale`]
//! (eventual consistency), [`aws`] (EC2's semantics where moto differs; [`private_ips`] for secondary private IPs), [`stats`] (what
//! happened), [`xml`] (EC2's query protocol), [`upstream`] (moto). This file holds the
//! configuration and the order of the steps ([`handle`]).

mod aws;
mod background;
mod faults;
mod private_ips;
mod stale;
mod stats;
mod throttle;
mod upstream;
mod xml;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use background::{Background, BackgroundStats};
pub use stats::Stats;
pub use throttle::{Bucket, AWS_CREATE_TAGS, AWS_MUTATING, AWS_NON_MUTATING};

/// What the proxy does; every knob off by default.
#[derive(Debug, Clone, Default)]
pub struct ChaosConfig {
    /// The bucket of each mutating action (AssociateAddress, DisassociateAddress, …: one each).
    pub mutating: Option<Bucket>,
    /// The bucket of each non-mutating action (Describe*: one each).
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
    /// The first this many calls faults apply to are forwarded and their answers lost, whatever
    /// `p_lose_response` throws: a scenario about lost answers always has some.
    pub lose_first: usize,
    /// Faults apply only to these actions (all actions when empty).
    pub fault_actions: HashSet<String>,
    /// Throttling of CreateTags, which has its own bucket in EC2.
    pub create_tags: Option<Bucket>,
    /// Another caller in the account taking a share of one action's bucket, from the start
    /// ([`Background`]); its calls are not in [`ChaosProxy::stats`] but in
    /// [`ChaosProxy::background`].
    pub background: Option<Background>,
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
    /// - AssociateAddress with `PrivateIpAddress` maps the address to that secondary private
    ///   IP, and DescribeAddresses, DescribeNetworkInterfaces (and an IMDS stand-in reading
    ///   addresses through the proxy) say so; moto puts every association on the primary
    ///   (each rule and its AWS documentation: `chaos/private_ips.rs`).
    pub aws_semantics: bool,
}

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

struct Shared {
    config: Mutex<ChaosConfig>,
    /// Calls faults applied to so far ([`ChaosConfig::lose_first`]).
    faulty_calls: std::sync::atomic::AtomicUsize,
    stats: Mutex<Stats>,
    buckets: Mutex<throttle::Buckets>,
    background: Mutex<BackgroundStats>,
    staleness: stale::Staleness,
    ec2_rules: aws::Ec2Rules,
    upstream: upstream::Upstream,
}

impl Shared {
    fn count(&self, action: &str, outcome: &str) {
        self.stats.lock().unwrap().count(action, outcome);
    }
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
            stats: Mutex::default(),
            buckets: Mutex::new(throttle::Buckets::new(&config)),
            background: Mutex::default(),
            staleness: stale::Staleness::default(),
            ec2_rules: aws::Ec2Rules::default(),
            config: Mutex::new(config),
            faulty_calls: Default::default(),
            upstream: upstream::Upstream::new(upstream),
        });
        let stop = CancellationToken::new();
        if let Some(bg) = shared.config.lock().unwrap().background.clone() {
            background::spawn(shared.clone(), bg, stop.clone());
        }
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
        self.shared.stats.lock().unwrap().clone()
    }

    /// What the other caller in the account got so far ([`ChaosConfig::background`]).
    pub fn background(&self) -> BackgroundStats {
        *self.shared.background.lock().unwrap()
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

/// One request through the steps the module's documentation lists, in that order.
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
    let dice = faults::throw(&config, &action, &s.faulty_calls);

    // Throttling.
    if dice.throttle || !s.buckets.lock().unwrap().admit(&action) {
        s.count(&action, "throttled");
        return Ok(xml::error(
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
        return Ok(xml::error(
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
    let key = stale::query_key(&params);
    let window = config.stale_window;
    if !window.is_zero() {
        if throttle::is_mutating(&action) {
            s.staleness
                .before_mutation(&s.upstream, &headers, &action, &params)
                .await;
        } else if action == "DescribeAddresses" {
            if let Some(stale) = s.staleness.answer(&key, &params, window) {
                s.count(&action, "stale");
                return Ok(xml::answer(StatusCode::OK, stale));
            }
        }
    }

    // EC2's semantics around the call moto answers.
    let aws = config.aws_semantics && !params.contains_key("DryRun");
    let before = match aws {
        true => Some(
            s.ec2_rules
                .before(&s.upstream, &headers, &action, &params)
                .await,
        ),
        false => None,
    };
    let (status, mut bytes) = match s.upstream.forward(&headers, body.clone()).await {
        Ok(r) => r,
        Err(e) => {
            s.count(&action, "upstream_failed");
            return Err(e);
        }
    };
    if let Some(before) = before.filter(|_| status.is_success()) {
        bytes = s
            .ec2_rules
            .after(
                &s.upstream,
                &headers,
                (&action, &params),
                before,
                bytes,
                &s.stats,
            )
            .await;
    }
    if !window.is_zero() && action == "DescribeAddresses" && status.is_success() {
        s.staleness.remember(key, bytes.clone());
    }
    if dice.lose {
        s.count(&action, "response_lost");
        return Err(Dropped);
    }
    s.count(&action, if status.is_success() { "ok" } else { "error" });
    Ok(xml::answer(status, bytes))
}
