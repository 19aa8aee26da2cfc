//! One function per subcommand: validate its flags, connect, run it within its budget, print
//! its result on stdout. Logs go to stderr; errors go back to `main` for the exit code.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::cli::{Cli, Command, PoolCommand, StatusFormat};
use crate::context::{self, Context, DEFAULT_LEASE, OPS_CALL_TIMEOUT};
use crate::ec2::AddressSource;
use crate::error::Error;
use crate::{agent, claim, config, doctor, gc, identity, pool, release, status};

/// Budget of the operations commands (status, pool, gc, doctor).
const OPS_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the parsed command to the end.
pub async fn run(cli: Cli, cancel: CancellationToken) -> Result<(), Error> {
    let g = &cli.global;
    match cli.command {
        Command::Claim(args) => {
            let cfg = config::claim_config(g, &args)?;
            print_json(&claim::run(cfg, cancel).await?)
        }
        Command::Agent(args) => agent::run(config::agent_config(g, &args)?, cancel).await,
        Command::Release(args) => {
            let from_file = match &args.env_file {
                Some(f) => Some(config::association_in_env_file(f)?),
                None => None,
            };
            let only = match from_file {
                Some(id) => id,
                None => config::validate_association(args.association_id.as_deref())?,
            };
            let source = config::validate_identity(g)?;
            let ctx = ops_context(g).await?;
            let budget = Budget::new(Instant::now() + args.timeout, cancel);
            let me = identity::resolve_in(&ctx.ec2, &budget, &source, g.private_ip).await?;
            print_json(&release::release(&ctx, &budget, &me, only.as_ref()).await?)
        }
        Command::Exporter(args) => {
            if args.interval < Duration::from_secs(5) {
                return Err(Error::Usage(format!(
                    "--interval {:?} is too short for reading a whole pool; use at least 5s",
                    args.interval
                )));
            }
            let ctx = ops_context(g).await?;
            agent::exporter(ctx, args.listen, args.interval, cancel).await
        }
        Command::Status(args) => {
            let ctx = ops_context(g).await?;
            ctx.warn_without_redis("states come from EC2 alone");
            let st =
                status::collect(&ctx, &Budget::new(Instant::now() + OPS_TIMEOUT, cancel)).await?;
            if args.cidrs {
                let blocks: Vec<String> = st.cidrs().iter().map(|b| b.to_string()).collect();
                match args.output {
                    StatusFormat::Json => print_json(&blocks)?,
                    StatusFormat::Table => {
                        print_text(&blocks.iter().map(|b| format!("{b}\n")).collect::<String>())?
                    }
                }
            } else {
                match args.output {
                    StatusFormat::Json => print_json(&st)?,
                    StatusFormat::Table => print_text(&st.table())?,
                }
            }
            match args.min_free {
                Some(n) if st.count(status::State::Free) < n => Err(Error::CheckFailed(format!(
                    "pool {:?} has {} free addresses, fewer than --min-free {n}",
                    st.pool,
                    st.count(status::State::Free)
                ))),
                _ => Ok(()),
            }
        }
        Command::Pool(PoolCommand::Grow(args)) => {
            let token = config::validate_token(args.idempotency_token.as_deref())?;
            let source = match (args.ipam_pool_id, args.public_ipv4_pool) {
                (Some(id), _) => AddressSource::Ipam(id),
                (None, Some(id)) => AddressSource::PublicIpv4Pool(id),
                (None, None) => AddressSource::Amazon,
            };
            let ctx = ops_context(g).await?;
            let budget = Budget::new(Instant::now() + OPS_TIMEOUT, cancel);
            print_json(
                &pool::grow(
                    &ctx,
                    &budget,
                    usize::from(args.count),
                    token.as_deref(),
                    &source,
                )
                .await?,
            )
        }
        Command::Pool(PoolCommand::Shrink(args)) => {
            let ctx = ops_context(g).await?;
            let budget = Budget::new(Instant::now() + OPS_TIMEOUT, cancel);
            print_json(&pool::shrink(&ctx, &budget, usize::from(args.count)).await?)
        }
        Command::Gc(args) => {
            let ctx = ops_context(g).await?;
            let budget = Budget::new(Instant::now() + OPS_TIMEOUT, cancel);
            print_text(&gc::gc(&ctx, &budget, args.apply).await?.text())
        }
        Command::Doctor => {
            let source = config::validate_identity(g)?;
            let ctx = ops_context(g).await?;
            let budget = Budget::new(Instant::now() + OPS_TIMEOUT, cancel);
            let checks = doctor::run(&ctx, &budget, &source, g.private_ip).await;
            print_text(&doctor::render(&checks))?;
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| c.verdict == doctor::Verdict::Fail)
                .map(|c| c.name.as_str())
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::CheckFailed(format!(
                    "doctor: failed: {}",
                    failed.join(", ")
                )))
            }
        }
    }
}

/// The pool, EC2 and Redis for the operations commands.
async fn ops_context(g: &crate::cli::Global) -> Result<Context, Error> {
    let pool = config::validate_pool(g.pool.as_deref())?;
    let redis = config::validate_redis(g)?;
    context::connect(&pool, redis.as_ref(), OPS_CALL_TIMEOUT, DEFAULT_LEASE).await
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let line = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    print_text(&format!("{line}\n"))
}

fn print_text(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::Internal(format!("cannot write to stdout: {e}")))
}
