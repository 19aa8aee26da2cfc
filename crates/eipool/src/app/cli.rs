//! Command-line interface: clap types only. Every flag can also come from an `EIPOOL_*`
//! environment variable; validation beyond parsing lives in `config`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # initContainer: claim an address for this node (identity from IMDSv2), write an env file
  eipool --pool media --redis-url redis://redis:6379 claim --output /run/eipool/env

  # the same for an explicit interface, with a 90 s budget
  EIPOOL_POOL=media eipool --network-interface-id eni-0abc claim --timeout 90s

AWS region, credentials and endpoint come from the standard AWS chain
(AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, IRSA web identity, ...).";

/// Claim and manage Elastic IPs from a fixed, tagged pool.
#[derive(Debug, Parser)]
#[command(name = "eipool", about, long_about = None, after_help = after_help())]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("EIPOOL_GIT_REVISION"), ")"))]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
    /// A warning for each deprecated flag or variable used, logged once logging is set up.
    #[arg(skip)]
    pub deprecated: Vec<String>,
}

/// A flag renamed, its old name and variable still read (hidden from `--help`), with a warning
/// naming the new one; both variables set and disagreeing is a usage error.
struct Renamed {
    /// The old and new argument ids (the fields' names).
    old_id: &'static str,
    new_id: &'static str,
    /// Set the new one, when the old one was given.
    take: fn(&mut ClaimArgs),
}

/// Every renamed flag (#39: one word per concept).
const RENAMED: &[Renamed] = &[Renamed {
    old_id: "require_lock",
    new_id: "require_leases",
    take: |c| c.require_leases = true,
}];

/// Parse the command line: the command to run; `None` when there is none because `--help` or
/// `--version` was asked for (printed here); or the usage error, whose exit code `main` takes
/// from the exit table like every other error's. A value that came from an `EIPOOL_*` variable
/// (not from the command line) is reported as that variable's.
pub fn parse() -> Result<Option<Cli>, crate::pure::error::Error> {
    use crate::pure::error::Error;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, FromArgMatches};
    let e = match Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)))
    {
        Ok((mut cli, m)) => {
            cli.deprecated = settle_renamed(&mut cli.command, &m, |var| std::env::var(var).ok())?;
            return Ok(Some(cli));
        }
        Err(e) => e,
    };
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        print(&e)?;
        return Ok(None);
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        print(&e)?;
        return Err(Error::Usage("no command given: choose one above".into()));
    }
    if let Some(msg) = blame_the_environment(&e, &Cli::command(), std::env::args()) {
        return Err(Error::Usage(msg));
    }
    // clap's message, its "error: " left to `main`, which says it once for every error.
    let text = e.render().to_string();
    let text = text.trim_end();
    Err(Error::Usage(
        text.strip_prefix("error: ").unwrap_or(text).to_string(),
    ))
}

/// The deprecated names used on this command line (`m`), each a warning naming the new one; a
/// value given under an old name is moved to the new one. The command line beats both
/// variables, as it beats any variable; both variables set (`env`) and disagreeing is a usage
/// error naming both.
fn settle_renamed(
    command: &mut Command,
    m: &clap::ArgMatches,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, crate::pure::error::Error> {
    use crate::pure::error::Error;
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let Some((name, sub)) = m.subcommand() else {
        return Ok(Vec::new());
    };
    let cmd = Cli::command();
    let Some(sub_cmd) = cmd.find_subcommand(name) else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    for r in RENAMED {
        if !sub.try_contains_id(r.old_id).unwrap_or(false) {
            continue;
        }
        let arg = |id: &str| sub_cmd.get_arguments().find(|a| a.get_id() == id);
        let (Some(old), Some(new)) = (arg(r.old_id), arg(r.new_id)) else {
            continue;
        };
        let var = |a: &clap::Arg| a.get_env().map(|v| v.to_string_lossy().into_owned());
        let (old_var, new_var) = (var(old).unwrap_or_default(), var(new).unwrap_or_default());
        let (old_long, new_long) = (old.get_long().unwrap_or(""), new.get_long().unwrap_or(""));
        let source = |id: &str| sub.value_source(id);
        let given = |id: &str| sub.get_flag(id);
        match (source(r.old_id), source(r.new_id)) {
            (Some(ValueSource::EnvVariable), Some(ValueSource::EnvVariable))
                if given(r.old_id) != given(r.new_id) =>
            {
                let shown = |v: &str| format!("{v}={:?}", env(v).unwrap_or_default());
                return Err(Error::Usage(format!(
                    "{} and {} disagree: {old_var} is the deprecated name of {new_var}; unset {old_var}",
                    shown(&new_var),
                    shown(&old_var),
                )));
            }
            (Some(ValueSource::CommandLine), _) => warnings.push(format!(
                "--{old_long} is deprecated: use --{new_long} (the old name will be removed)"
            )),
            (Some(ValueSource::EnvVariable), _) => warnings.push(format!(
                "{old_var} is deprecated: set {new_var} instead (the old name will be removed)"
            )),
            _ => {}
        }
        if given(r.old_id) {
            if let Some(claim) = command.claim_args_mut() {
                (r.take)(claim);
            }
        }
    }
    Ok(warnings)
}

impl Command {
    /// The claim flags of a command that claims (`claim`, `agent`, `node`).
    fn claim_args_mut(&mut self) -> Option<&mut ClaimArgs> {
        match self {
            Command::Claim(c) => Some(c),
            Command::Agent(a) => Some(&mut a.claim),
            Command::Node(n) => Some(&mut n.claim),
            _ => None,
        }
    }
}

/// Print clap's help or version. A reader that left early (`eipool claim --help | head -1`) is
/// not an error: what it wanted, it read.
fn print(e: &clap::Error) -> Result<(), crate::pure::error::Error> {
    match e.print() {
        Err(io) if !cli_edge::out::reader_gone(&io) => Err(crate::pure::error::Error::Internal(
            format!("cannot print: {io}"),
        )),
        _ => Ok(()),
    }
}

/// When `e` is about a value that came from a flag's environment variable, the message naming
/// that variable (cli-edge finds it: the innermost named command's flag, `status --output` is
/// EIPOOL_STATUS_OUTPUT, `claim --output` EIPOOL_OUTPUT).
fn blame_the_environment(
    e: &clap::Error,
    cmd: &clap::Command,
    argv: impl Iterator<Item = String>,
) -> Option<String> {
    let cli_edge::blame::Blame { var, value, why } = cli_edge::blame::blame(e, cmd, argv)?;
    Some(format!(
        "{var}={value} (from the environment): {why}. Fix or unset {var}"
    ))
}

/// A usage error found after parsing (a URL, a file, a combination) names flags; for each whose
/// value came from its variable, say which variable, so the operator fixes the right place.
/// (The value is not repeated: it may hold a password.)
pub(crate) fn name_the_variable(e: crate::pure::error::Error) -> crate::pure::error::Error {
    use crate::pure::error::Error;
    use clap::CommandFactory;
    let Error::Usage(msg) = &e else { return e };
    match cli_edge::blame::note_the_variables(msg, &Cli::command(), std::env::args()) {
        Some(note) => Error::Usage(format!("{msg} {note}")),
        None => e,
    }
}

fn after_help() -> String {
    format!("{}\n{EXAMPLES}", crate::pure::error::exit_code_help())
}

/// Flags every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options (every command)")]
pub struct Global {
    /// Pool name: the Elastic IPs tagged eipool:pool=<NAME>
    #[arg(long, global = true, env = "EIPOOL_POOL", value_name = "NAME")]
    pub pool: Option<String>,

    /// This node's network interface (eni-...) [default: from IMDSv2]
    #[arg(
        long,
        global = true,
        env = "EIPOOL_NETWORK_INTERFACE_ID",
        value_name = "ENI",
        conflicts_with = "instance_id"
    )]
    pub network_interface_id: Option<String>,

    /// This node's instance (i-...); its device-index-0 interface is used [default: from IMDSv2]
    #[arg(long, global = true, env = "EIPOOL_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,

    /// Private IPv4 of the interface to map the address to [default: the interface's primary]
    #[arg(long, global = true, env = "EIPOOL_PRIVATE_IP", value_name = "IP")]
    pub private_ip: Option<Ipv4Addr>,

    /// Redis for the herd's leases, pace and shared listing: redis://[USER:PASSWORD@]HOST:PORT, or rediss:// for TLS; one node or a cluster (an ElastiCache configuration endpoint works as given); without it claims rely on EC2's compare-and-swap alone
    #[arg(
        long,
        global = true,
        env = "EIPOOL_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// PEM bundle of the CA(s) that signed Redis's certificate, trusted instead of the system's roots (rediss:// only)
    #[arg(long, global = true, env = "EIPOOL_REDIS_CA_FILE", value_name = "PEM")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate for Redis mutual TLS (rediss:// only; with --redis-client-key)
    #[arg(
        long,
        global = true,
        env = "EIPOOL_REDIS_CLIENT_CERT",
        value_name = "PEM"
    )]
    pub redis_client_cert: Option<PathBuf>,

    /// PEM private key of --redis-client-cert
    #[arg(
        long,
        global = true,
        env = "EIPOOL_REDIS_CLIENT_KEY",
        value_name = "PEM"
    )]
    pub redis_client_key: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, env = "EIPOOL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. debug or eipool=debug)
    #[arg(
        long,
        global = true,
        env = "EIPOOL_LOG",
        default_value = "info",
        value_name = "FILTER",
        value_parser = log_filter
    )]
    pub log: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Claim a free address of the pool for this interface (idempotent: adopts one it already holds)
    #[command(after_help = after_help())]
    Claim(ClaimArgs),
    /// Give back this interface's pool address (preStop hook); exit 0 when nothing is held
    #[command(after_help = after_help())]
    Release(ReleaseArgs),
    /// Sidecar: hold an address, check it every --interval, reclaim on drift, serve /metrics /healthz /readyz
    #[command(after_help = after_help())]
    Agent(AgentArgs),
    /// DaemonSet: hold this node's address, write it to an env file on the host, label the Node with it and remove its startup taint (and taint it again if the address is lost for good)
    #[command(after_help = after_help())]
    Node(NodeArgs),
    /// Serve the pool's gauges (eipool_pool_addresses{state}) for alerts; run one replica
    #[command(after_help = after_help())]
    Exporter(ExporterArgs),
    /// Show the pool (free / assigned / claiming / foreign), or with --cidrs the blocks to publish
    #[command(after_help = after_help())]
    Status(StatusArgs),
    /// Grow or shrink the pool
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Find addresses held by stopped/terminated instances or vanished interfaces; --apply frees them
    #[command(after_help = after_help())]
    Gc(GcArgs),
    /// Check the setup line by line: the EC2 endpoint, credentials, the role's permissions (DryRun), this node, Redis, the pool
    #[command(after_help = after_help())]
    Doctor(DoctorArgs),
}

/// Flags of `eipool release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Release only if the interface holds the address under this association (the env file's EIPOOL_ASSOCIATION_ID)
    #[arg(long, env = "EIPOOL_ASSOCIATION_ID", value_name = "ID")]
    pub association_id: Option<String>,

    /// Release only the association named in this env file (the one claim/agent --output wrote); it must exist. With the file's variables exported, EIPOOL_ASSOCIATION_ID agrees with it
    #[arg(long, env = "EIPOOL_ENV_FILE", value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// Upper bound on the whole command (1s to 1h)
    #[arg(long, env = "EIPOOL_RELEASE_TIMEOUT", default_value = "30s", value_parser = one_second_to_an_hour, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Flags of `eipool exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Where to serve /metrics, /healthz and /readyz: HOST:PORT (a name or an IP), or :PORT for every interface
    #[arg(long, env = "EIPOOL_LISTEN", default_value = ":9877", value_parser = parse_listen, value_name = "ADDR")]
    pub listen: String,

    /// How often to read the pool (one DescribeAddresses, plus Redis; 5s to 24h)
    #[arg(long, env = "EIPOOL_INTERVAL", default_value = "30s", value_parser = five_seconds_to_a_day, value_name = "DURATION")]
    pub interval: Duration,

    /// Upper bound on each read of the pool (at most --interval; 1s to 1h) [default: 20s, or --interval if shorter]
    #[arg(long, env = "EIPOOL_TIMEOUT", value_parser = one_second_to_an_hour, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

/// Flags of `eipool agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Where to serve /metrics, /healthz and /readyz: HOST:PORT (a name or an IP), or :PORT for every interface [default: this node's private IP, port 9877: reachable in the VPC, not on other interfaces]
    #[arg(long, env = "EIPOOL_LISTEN", value_parser = parse_listen, value_name = "ADDR")]
    pub listen: Option<String>,

    /// How often to check that the address is still ours: asks the node (IMDSv2), which costs no EC2 call; EC2 only when the node says no or has no answer (1s to 24h)
    #[arg(long, env = "EIPOOL_INTERVAL", default_value = "15s", value_parser = one_second_to_a_day, value_name = "DURATION")]
    pub interval: Duration,

    /// How often to ask EC2 anyway (one DescribeAddresses by allocation id), as a backstop to the node's view; the first comes at a random point of the first period (1s to 7d)
    #[arg(long, env = "EIPOOL_EC2_CHECK_EVERY", default_value = "1h", value_parser = one_second_to_a_week, value_name = "DURATION")]
    pub ec2_check_every: Duration,

    /// What to do when the address is moved or disassociated by someone else
    #[arg(long, env = "EIPOOL_ON_DRIFT", value_enum, default_value_t = OnDriftArg::Reclaim)]
    pub on_drift: OnDriftArg,

    /// On SIGTERM/SIGINT, give the address back before exiting (its variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "EIPOOL_RELEASE_ON_EXIT", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub release_on_exit: bool,

    /// Bound on the release at exit (keep it under the pod's termination grace period; 1s to 1h)
    #[arg(long, env = "EIPOOL_RELEASE_TIMEOUT", default_value = "20s", value_parser = one_second_to_an_hour, value_name = "DURATION")]
    pub release_timeout: Duration,

    /// Also list the whole pool every interval and export eipool_pool_addresses{state} (enable on one agent only; its variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "EIPOOL_POOL_METRICS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub pool_metrics: bool,

    #[command(flatten)]
    pub claim: ClaimArgs,
}

/// Flags of `eipool node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// This pod's Node: set it from the downward API (fieldRef spec.nodeName)
    #[arg(long, env = "EIPOOL_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// The Node label that carries the node's public IP
    #[arg(
        long,
        env = "EIPOOL_NODE_LABEL",
        default_value = "eipool.io/public-ip",
        value_name = "KEY"
    )]
    pub node_label: String,

    /// The startup taint removed once EC2 shows the address on this node's interface, and put back when the address is lost and cannot be reclaimed (KEY[=VALUE]:EFFECT)
    #[arg(
        long,
        env = "EIPOOL_NODE_TAINT",
        default_value = "eipool.io/unassigned:NoSchedule",
        value_name = "TAINT"
    )]
    pub node_taint: String,

    /// A kubeconfig file [default: the in-cluster configuration (the pod's service account), or KUBECONFIG when set]
    #[arg(long, env = "EIPOOL_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Where to serve /metrics, /healthz and /readyz: HOST:PORT or :PORT [default: this node's private IP, port 9877]
    #[arg(long, env = "EIPOOL_LISTEN", value_parser = parse_listen, value_name = "ADDR")]
    pub listen: Option<String>,

    /// How often to check that the address is still ours (asks the node, IMDSv2; 1s to 24h)
    #[arg(long, env = "EIPOOL_INTERVAL", default_value = "15s", value_parser = one_second_to_a_day, value_name = "DURATION")]
    pub interval: Duration,

    /// How often to ask EC2 anyway, as a backstop to the node's view (1s to 7d)
    #[arg(long, env = "EIPOOL_EC2_CHECK_EVERY", default_value = "1h", value_parser = one_second_to_a_week, value_name = "DURATION")]
    pub ec2_check_every: Duration,

    #[command(flatten)]
    pub claim: ClaimArgs,
}

/// What the agent does when its address is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDriftArg {
    /// Claim a new address with the same protocol and rewrite `--output`.
    Reclaim,
    /// Exit with code 3 (let Kubernetes restart the pod).
    Exit,
}

/// Output format of `eipool status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A table for people.
    Table,
    /// One JSON object.
    Json,
}

/// Output format of `eipool gc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GcFormat {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// Flags of `eipool status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format
    #[arg(long, env = "EIPOOL_STATUS_OUTPUT", value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,

    /// Exit 1 when fewer than N addresses are free (for scripts and cron alerts)
    #[arg(long, env = "EIPOOL_MIN_FREE", value_name = "N")]
    pub min_free: Option<usize>,

    /// Print only the minimal CIDR blocks covering the pool: the list for customers' firewall admins (its variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "EIPOOL_CIDRS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub cidrs: bool,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// `eipool pool …`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Allocate new Elastic IPs tagged into the pool and print them
    #[command(after_help = after_help())]
    Grow(GrowArgs),
    /// Release free addresses of the pool to AWS (never an associated one)
    #[command(after_help = after_help())]
    Shrink(ShrinkArgs),
}

/// Flags of `eipool pool grow`.
#[derive(Debug, Args)]
pub struct GrowArgs {
    /// How many addresses (with --idempotency-token: how many the token should have in all)
    #[arg(long, env = "EIPOOL_GROW_COUNT", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,

    /// Makes a re-run allocate only what an earlier run with this token did not (tags eipool:grow-token)
    #[arg(long, env = "EIPOOL_IDEMPOTENCY_TOKEN", value_name = "TOKEN")]
    pub idempotency_token: Option<String>,

    /// Allocate from this IPAM pool (ipam-pool-...) instead of Amazon's
    #[arg(
        long,
        env = "EIPOOL_IPAM_POOL_ID",
        value_name = "ID",
        conflicts_with = "public_ipv4_pool"
    )]
    pub ipam_pool_id: Option<String>,

    /// Allocate from this BYOIP public IPv4 pool (ipv4pool-ec2-...) instead of Amazon's
    #[arg(long, env = "EIPOOL_PUBLIC_IPV4_POOL", value_name = "ID")]
    pub public_ipv4_pool: Option<String>,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Flags of `eipool pool shrink`.
#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// How many free addresses to release
    #[arg(long, env = "EIPOOL_SHRINK_COUNT", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// The bound every operations command runs within.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Upper bound on the whole command (every EC2 and Redis call within it), e.g. 30s (1s to 24h)
    #[arg(long, env = "EIPOOL_TIMEOUT", default_value = "60s", value_parser = one_second_to_a_day, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Which role's permissions `eipool doctor` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The media nodes' role (deploy/iam/node.json): claim, agent, release, exporter.
    Node,
    /// The operators' role (deploy/iam/operator.json): status, gc, pool grow and shrink.
    Operator,
}

/// Flags of `eipool doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The role whose permissions to check (DryRun of exactly what its shipped policy allows)
    #[arg(long, env = "EIPOOL_ROLE", value_enum, default_value_t = RoleArg::Node)]
    pub role: RoleArg,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Flags of `eipool gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Do it, rather than print what would be done (its variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "EIPOOL_GC_APPLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub apply: bool,

    /// Output format
    #[arg(long, env = "EIPOOL_GC_OUTPUT", value_enum, default_value_t = GcFormat::Text)]
    pub output: GcFormat,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Flags of `eipool claim`.
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// Upper bound on the whole command, e.g. 90s or 3m (1s to 24h)
    #[arg(long, env = "EIPOOL_TIMEOUT", default_value = "180s", value_parser = one_second_to_a_day, value_name = "DURATION")]
    pub timeout: Duration,

    /// Also write EIPOOL_PUBLIC_IP=... etc. to this env file (atomically: temp file + rename)
    #[arg(long, env = "EIPOOL_OUTPUT", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Claim only under Redis's leases (the interface lease and each address's): when Redis is unreachable, wait for it and fail (exit 75 at the deadline) rather than claim on EC2 alone (its variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "EIPOOL_REQUIRE_LEASES", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub require_leases: bool,

    /// Deprecated name of --require-leases, still read (its variable takes 1/0, true/false,
    /// yes/no, on/off)
    #[arg(long, env = "EIPOOL_REQUIRE_LOCK", hide = true, action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub require_lock: bool,

    /// claim: when the pool is exhausted, wait in its line for a freed address (first come,
    /// first served; woken within about a second of a release) until shortly before --timeout
    /// (its cleanup reserve and 2s earlier), instead of exiting 69 at once. Without Redis, look
    /// again every 5s. The agent always waits (its variable takes 1/0, true/false, yes/no,
    /// on/off)
    #[arg(long, env = "EIPOOL_WAIT", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub wait: bool,

    /// How long a claimer's lease on one address lasts in Redis; renewed before every EC2 call made under it (1s to 1h)
    #[arg(long, env = "EIPOOL_LEASE", default_value = "15s", value_parser = one_second_to_an_hour, value_name = "DURATION")]
    pub lease: Duration,

    /// Timeout of each single EC2 call (100ms to 5m)
    #[arg(long, env = "EIPOOL_CALL_TIMEOUT", default_value = "5s", value_parser = a_tenth_of_a_second_to_5_minutes, value_name = "DURATION")]
    pub call_timeout: Duration,
}

/// A duration from `min` to `max`. Every duration has a ceiling: a deadline past it is a unit
/// typed wrong, and one past the clock's range (`300000000000y`) cannot even be computed.
fn within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    // The value as the operator wrote it; the bound in its largest whole unit (24h, not 1day).
    let (given, shown) = (s.trim(), crate::pure::error::shown);
    if d < min {
        return Err(format!("{given} is too short; use at least {}", shown(min)));
    }
    if d > max {
        return Err(format!("{given} is too long; use at most {}", shown(max)));
    }
    Ok(d)
}
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
fn a_tenth_of_a_second_to_5_minutes(s: &str) -> Result<Duration, String> {
    within(s, Duration::from_millis(100), Duration::from_secs(300))
}
fn one_second_to_an_hour(s: &str) -> Result<Duration, String> {
    within(s, SECOND, HOUR)
}
fn one_second_to_a_day(s: &str) -> Result<Duration, String> {
    within(s, SECOND, DAY)
}
fn one_second_to_a_week(s: &str) -> Result<Duration, String> {
    within(s, SECOND, DAY * 7)
}
fn five_seconds_to_a_day(s: &str) -> Result<Duration, String> {
    within(s, SECOND * 5, DAY)
}

/// `HOST:PORT` (a name or an IP address, `[v6]:PORT` too) or `:PORT` (every interface).
pub(crate) fn parse_listen(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port; use HOST:PORT or :PORT, e.g. :9877"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
    if host.is_empty() {
        return Ok(format!("0.0.0.0:{port}"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    Ok(s.to_string())
}

/// A log filter `tracing` understands: a bad one is refused, not replaced by `info` with a
/// warning an operator may never read.
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| {
            format!("{e}; use a level, optionally with TARGET=LEVEL pairs after commas, e.g. info, debug or info,eipool=debug")
        })
}

/// A positive duration such as `90s`, `3m` or `1500ms`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; use a duration such as 90s, 3m or 1500ms"))?;
    if d.is_zero() {
        return Err("must be greater than zero, e.g. 90s".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("90").is_err());
    }

    #[test]
    fn durations_have_floors_and_listen_takes_what_operators_write() {
        assert!(a_tenth_of_a_second_to_5_minutes("1ns").is_err());
        assert!(a_tenth_of_a_second_to_5_minutes("100ms").is_ok());
        assert!(a_tenth_of_a_second_to_5_minutes("5m").is_ok());
        assert!(one_second_to_a_day("500ms")
            .unwrap_err()
            .contains("at least 1s"));
        assert_eq!(
            one_second_to_a_day("25h").unwrap_err(),
            "25h is too long; use at most 24h"
        );
        assert_eq!(
            one_second_to_a_week("200h").unwrap_err(),
            "200h is too long; use at most 168h"
        );
        assert!(one_second_to_an_hour("300000000000y")
            .unwrap_err()
            .contains("at most 1h"));
        // (--listen, accepted as)
        let cases = [
            (":9877", Some("0.0.0.0:9877")),
            ("localhost:9877", Some("localhost:9877")),
            ("10.0.0.5:9877", Some("10.0.0.5:9877")),
            ("[::1]:9877", Some("[::1]:9877")),
            ("9877", None),
            (":0", None),
            (":http", None),
            ("a b:1", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_listen(input).ok().as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn a_log_filter_is_checked() {
        for good in [
            "info",
            "debug",
            "info,eipool=debug",
            "eipool::adapters=trace",
            "off",
        ] {
            assert_eq!(log_filter(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["info,eipool=loud", "[{", "=debug=x"] {
            let e = log_filter(bad).unwrap_err();
            assert!(e.contains("e.g. info"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_switch_says_what_its_variable_takes() {
        fn walk(cmd: &clap::Command, silent: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let switch = matches!(arg.get_action(), ArgAction::SetTrue);
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if switch
                    && arg.get_env().is_some()
                    && !help.contains("1/0, true/false, yes/no, on/off")
                {
                    silent.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, silent);
            }
        }
        let mut silent = Vec::new();
        walk(&Cli::command(), &mut silent);
        assert!(
            silent.is_empty(),
            "switches whose help does not list their variable's values: {silent:?}"
        );
    }

    #[test]
    fn booleans_accept_what_operators_write() {
        // (EIPOOL_GC_APPLY, --apply); this test alone uses the variable.
        let cases = [
            ("1", Some(true)),
            ("yes", Some(true)),
            ("TRUE", Some(true)),
            ("on", Some(true)),
            ("0", Some(false)),
            ("no", Some(false)),
            ("false", Some(false)),
            ("maybe", None),
        ];
        for (value, want) in cases {
            // SAFETY: no other test reads or writes EIPOOL_GC_APPLY.
            unsafe { std::env::set_var("EIPOOL_GC_APPLY", value) };
            let got = Cli::try_parse_from(["eipool", "--pool", "p", "gc"])
                .ok()
                .map(|cli| matches!(cli.command, Command::Gc(GcArgs { apply: true, .. })));
            assert_eq!(got, want, "EIPOOL_GC_APPLY={value}");
        }
        unsafe { std::env::remove_var("EIPOOL_GC_APPLY") };
    }

    #[test]
    fn an_invalid_value_from_the_environment_names_the_variable() {
        // SAFETY: this test alone sets this variable, and no other test reads it.
        unsafe { std::env::set_var("EIPOOL_RELEASE_ON_EXIT", "perhaps") };
        let e = Cli::try_parse_from(["eipool", "--pool", "p", "agent"]).unwrap_err();
        let argv = ["eipool", "--pool", "p", "agent"].map(String::from);
        let msg = blame_the_environment(&e, &Cli::command(), argv.into_iter()).unwrap();
        assert!(
            msg.starts_with("EIPOOL_RELEASE_ON_EXIT=\"perhaps\""),
            "{msg}"
        );
        assert!(msg.contains("--release-on-exit"), "{msg}");
        // Given on the command line, it is the flag's error, not the variable's.
        let argv = ["eipool", "agent", "--release-on-exit=perhaps"].map(String::from);
        assert_eq!(
            blame_the_environment(&e, &Cli::command(), argv.into_iter()),
            None
        );
        unsafe { std::env::remove_var("EIPOOL_RELEASE_ON_EXIT") };
    }

    /// eipool's table (in `pure::error`) and the one the three binaries share (cli-edge) agree.
    #[test]
    fn the_exit_codes_are_the_shared_tables() {
        use crate::pure::error::exit;
        let ours = [
            exit::OK,
            exit::CHECK_FAILED,
            exit::USAGE,
            exit::EXHAUSTED,
            exit::INTERNAL,
            exit::UNDELIVERED,
            exit::TEMPORARY,
            exit::PERMISSION,
            exit::INTERRUPTED,
        ];
        let shared = [
            cli_edge::exit::OK,
            cli_edge::exit::CHECK_FAILED,
            cli_edge::exit::USAGE,
            cli_edge::exit::UNAVAILABLE,
            cli_edge::exit::SOFTWARE,
            cli_edge::exit::IOERR,
            cli_edge::exit::TEMPFAIL,
            cli_edge::exit::NOPERM,
            cli_edge::exit::INTERRUPTED,
        ];
        assert_eq!(ours, shared);
    }

    #[test]
    fn every_flag_has_an_env_var() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert!(
            missing.is_empty(),
            "flags without EIPOOL_* env: {missing:?}"
        );
    }

    #[test]
    fn the_readme_documents_every_flag() {
        let readme = include_str!("../../../../README.md");
        fn walk(cmd: &clap::Command, readme: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let documented = [' ', '`']
                        .iter()
                        .any(|end| readme.contains(&format!("--{long}{end}")));
                    if !matches!(long, "help" | "version") && !documented {
                        missing.push(format!("--{long}"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, readme, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), readme, &mut missing);
        assert!(
            missing.is_empty(),
            "README's configuration table lacks {missing:?}"
        );
    }
}
