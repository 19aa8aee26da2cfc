//! The strategies eipool is measured against, as real claimer processes (`eipool-lab baseline`).
//! They print the same JSON as `eipool claim` and exit 69 when they find nothing free.
//!
//! - `global-spin-lock`: the reference design — one Redis lock for the pool (SET NX PX, spin
//!   with a fixed sleep), held from listing until validation; plain AssociateAddress
//!   (reassociation allowed: the lock is its only guard).
//! - `unlocked-steal`: no lock, plain AssociateAddress (reassociation allowed): the state before
//!   any fix. It can hand one address to two claimers.
//! - `cas-only`: no Redis; AllowReassociation=false and random choice among free addresses.
//!
//! They use the SDK's standard retries (10 attempts) against throttling, as a typical
//! implementation would. Not shipped: they exist to be measured.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::Client;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::fixture::{Ec2Lab, Eip};

/// A baseline strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The reference design: a global Redis spin lock from listing to validation.
    GlobalSpinLock,
    /// No lock, plain AssociateAddress (steals).
    UnlockedSteal,
    /// No Redis; AllowReassociation=false, random choice.
    CasOnly,
}

/// The pool's addresses nobody holds (one DescribeAddresses, the lab's own pool listing).
async fn free_addresses(ec2: &Client, pool: &str) -> Result<Vec<Eip>> {
    let lab = Ec2Lab {
        client: ec2.clone(),
    };
    Ok(lab
        .pool_state(pool)
        .await?
        .into_values()
        .filter(|e| e.association_id.is_none())
        .collect())
}

/// Plain AssociateAddress with reassociation allowed (it takes the address from any holder);
/// returns the association id.
async fn associate_stealing(ec2: &Client, alloc: &str, eni: &str) -> Result<String> {
    let out = ec2
        .associate_address()
        .allocation_id(alloc)
        .network_interface_id(eni)
        .allow_reassociation(true)
        .send()
        .await
        .context("AssociateAddress")?;
    Ok(out.association_id().unwrap_or_default().to_string())
}

/// Poll DescribeAddresses by id until it shows the address on `eni`.
async fn validate(ec2: &Client, alloc: &str, eni: &str, deadline: Instant) -> Result<bool> {
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let out = ec2
            .describe_addresses()
            .allocation_ids(alloc)
            .send()
            .await
            .context("DescribeAddresses")?;
        if let Some(a) = out.addresses().first() {
            if a.network_interface_id() == Some(eni) {
                return Ok(true);
            }
            if a.network_interface_id()
                .is_some_and(|n| !n.is_empty() && n != eni)
            {
                return Ok(false); // someone else has it now
            }
        }
    }
    Ok(false)
}

fn report(f: &Eip, assoc: &str, eni: &str, started: Instant) -> ExitCode {
    println!(
        "{}",
        serde_json::json!({
            "public_ip": f.public_ip,
            "allocation_id": f.allocation_id,
            "association_id": assoc,
            "network_interface_id": eni,
            "reused": false,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })
    );
    ExitCode::SUCCESS
}

/// Run one baseline claim to the end; the exit code follows `eipool claim`'s (0, 69, 75).
pub async fn run(
    strategy: Strategy,
    pool: &str,
    eni: &str,
    redis_url: Option<&str>,
    timeout: Duration,
) -> Result<ExitCode> {
    let started = Instant::now();
    let deadline = started + timeout;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(10))
        .load()
        .await;
    let ec2 = Client::new(&config);
    match strategy {
        Strategy::GlobalSpinLock => {
            let url = redis_url.context("global-spin-lock needs --redis-url")?;
            let mut redis = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            let key = format!("reference:{{{pool}}}:lock");
            let token = format!("{:x}", rand::rng().random::<u64>());
            loop {
                let got: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut redis)
                    .await?;
                if got.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    return Ok(ExitCode::from(75));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let result = async {
                let mut free = free_addresses(&ec2, pool).await?;
                free.shuffle(&mut rand::rng());
                let Some(f) = free.into_iter().next() else {
                    return Ok(None);
                };
                let assoc = associate_stealing(&ec2, &f.allocation_id, eni).await?;
                validate(&ec2, &f.allocation_id, eni, deadline).await?;
                anyhow::Ok(Some((f, assoc)))
            }
            .await;
            let _: i64 = redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
                .key(&key)
                .arg(&token)
                .invoke_async(&mut redis)
                .await?;
            match result? {
                Some((f, assoc)) => Ok(report(&f, &assoc, eni, started)),
                None => Ok(ExitCode::from(69)),
            }
        }
        Strategy::UnlockedSteal => {
            let free = free_addresses(&ec2, pool).await?;
            let Some(f) = free.choose(&mut rand::rng()) else {
                return Ok(ExitCode::from(69));
            };
            let assoc = associate_stealing(&ec2, &f.allocation_id, eni).await?;
            validate(&ec2, &f.allocation_id, eni, deadline).await?;
            Ok(report(f, &assoc, eni, started))
        }
        Strategy::CasOnly => {
            let mut free = free_addresses(&ec2, pool).await?;
            free.shuffle(&mut rand::rng());
            for f in &free {
                match ec2
                    .associate_address()
                    .allocation_id(&f.allocation_id)
                    .network_interface_id(eni)
                    .allow_reassociation(false)
                    .send()
                    .await
                {
                    Ok(out) => {
                        let assoc = out.association_id().unwrap_or_default().to_string();
                        if validate(&ec2, &f.allocation_id, eni, deadline).await? {
                            return Ok(report(f, &assoc, eni, started));
                        }
                    }
                    Err(e) if e.code() == Some("Resource.AlreadyAssociated") => continue,
                    Err(e) => return Err(anyhow::Error::new(e).context("AssociateAddress")),
                }
            }
            Ok(ExitCode::from(69))
        }
    }
}
