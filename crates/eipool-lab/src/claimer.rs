//! Run the real `eipool` binary as a process, with an environment that points it at the lab's
//! moto (and nowhere else), and collect its exit code, JSON and logs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

/// Where the lab's claimers send AWS traffic.
#[derive(Debug, Clone)]
pub struct LabEnv {
    /// The `eipool` binary.
    pub eipool: PathBuf,
    /// moto's endpoint (`AWS_ENDPOINT_URL`).
    pub ec2_endpoint: String,
    /// IMDS endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT`); a closed loopback port by default so
    /// nothing ever reaches for 169.254.169.254.
    pub imds_endpoint: String,
    /// `AWS_REGION` (moto keeps separate state per region: a fresh region is a fresh account).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (moto accepts any until its IAM
    /// enforcement is on; see [`crate::iam`]).
    pub credentials: (String, String),
}

impl LabEnv {
    /// An environment for `eipool` at `eipool` against moto at `ec2_endpoint`.
    pub fn new(eipool: &Path, ec2_endpoint: &str) -> LabEnv {
        LabEnv {
            eipool: eipool.to_path_buf(),
            ec2_endpoint: ec2_endpoint.to_string(),
            imds_endpoint: "http://127.0.0.1:9".into(),
            region: crate::fixture::REGION.into(),
            credentials: ("testing".into(), "testing".into()),
        }
    }

    /// `eipool ARGS` with a clean environment: fake credentials, the lab region and endpoints,
    /// no AWS config files, and only PATH/HOME from the parent.
    pub fn command(&self, args: &[String]) -> Command {
        self.command_of(&self.eipool, args)
    }

    /// Any lab program (e.g. a baseline claimer) with the same clean environment.
    pub fn command_of(&self, program: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_ACCESS_KEY_ID", &self.credentials.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.credentials.1)
            .env("AWS_REGION", &self.region)
            .env("AWS_ENDPOINT_URL", &self.ec2_endpoint)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &self.imds_endpoint)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Run `eipool ARGS` to the end.
    pub async fn run(&self, args: &[String]) -> Outcome {
        let out = self.command(args).output().await.expect("spawn eipool");
        Outcome::from_output(args, out)
    }
}

/// The JSON `eipool claim` prints on success.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ClaimReport {
    /// The address.
    pub public_ip: String,
    /// Its allocation id.
    pub allocation_id: String,
    /// The association.
    pub association_id: String,
    /// The interface.
    pub network_interface_id: String,
    /// The private IP of the interface the address maps to.
    #[serde(default)]
    pub private_ip: String,
    /// Whether it adopted an address it already held.
    pub reused: bool,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// What one `eipool` run ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The arguments it ran with.
    pub args: Vec<String>,
    /// The exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Stdout.
    pub stdout: String,
    /// Stderr (logs).
    pub stderr: String,
}

impl Outcome {
    /// From a finished process.
    pub fn from_output(args: &[String], out: std::process::Output) -> Outcome {
        Outcome {
            args: args.to_vec(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The claim report, when it exited 0 with one.
    pub fn report(&self) -> Option<ClaimReport> {
        if self.code != Some(0) {
            return None;
        }
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// The last line of stderr (the error message, when it failed).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A URL's password stays out of test output, as it stays out of eipool's.
        let args: Vec<String> = self.args.iter().map(|a| redact_userinfo(a)).collect();
        write!(
            f,
            "eipool {:?} exited {:?}\nstdout: {}\nstderr:\n{}",
            args, self.code, self.stdout, self.stderr
        )
    }
}

/// `scheme://user:***@host…` for an argument that is a URL with user-info; others unchanged.
fn redact_userinfo(arg: &str) -> String {
    match (arg.find("://"), arg.rfind('@')) {
        (Some(i), Some(at)) if at > i => format!("{}***{}", &arg[..i + 3], &arg[at..]),
        _ => arg.to_string(),
    }
}
