//! Command-line types. Every flag is also an environment variable (`TFMOD_*`); AWS settings
//! come from the standard chain (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, …).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
AWS: credentials, region and endpoint come from the standard chain (AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an S3-compatible store; path-style addressing is then
forced, and sources are written as s3::http(s)://HOST/BUCKET/KEY?region=R).

EXAMPLES:
  tfmod publish modules/vpc --name vpc --version 1.3.0 --bucket acme-tf-modules --prefix tf
  tfmod pin vpc 1.3.0 --dir live/acme-prod/eu-west-1/dev --bucket acme-tf-modules --prefix tf
  tfmod promote vpc 1.3.0 --from dev --to staging --bucket acme-tf-modules --prefix tf
  tfmod verify live --bucket acme-tf-modules --prefix tf

";

#[derive(Debug, Parser)]
#[command(
    name = "tfmod",
    version,
    about = "Versioned, immutable, checksummed Terraform modules in S3, pinned per stage",
    after_help = format!("{AFTER_HELP}{}", crate::error::EXIT_CODES),
)]
pub struct Cli {
    /// More detail on stderr (-v: each S3 call; -vv: the SDK's).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The most any S3 call may take, retries included (e.g. 30s, 2m).
    #[arg(long, global = true, env = "TFMOD_S3_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub s3_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the modules are kept.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The S3 bucket (no dots in its name).
    #[arg(long, env = "TFMOD_BUCKET")]
    pub bucket: String,
    /// A key prefix inside the bucket: modules are PREFIX/NAME/X.Y.Z.zip (+ .json).
    #[arg(long, env = "TFMOD_PREFIX", default_value = "")]
    pub prefix: String,
}

/// Optional trust anchor for lock and verify.
#[derive(Debug, Args, Clone)]
pub struct TrustArgs {
    /// Only sources in this bucket are accepted; any other s3:: source is a problem.
    #[arg(long, env = "TFMOD_BUCKET")]
    pub bucket: Option<String>,
    /// With --bucket: only sources under this prefix are accepted.
    #[arg(long, env = "TFMOD_PREFIX", default_value = "")]
    pub prefix: String,
    /// With --bucket: a unit directory whose own Terraform files run (or that has no source), or
    /// an HCL file whose generate blocks write .tf files, allowed anyway: its code is checked by
    /// review alone. Repeatable; comma-separated in the variable. Set it in the hook's
    /// configuration, not in the repository.
    #[arg(
        long = "allow-local-code",
        env = "TFMOD_ALLOW_LOCAL_CODE",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub allow_local_code: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive DIR deterministically and store it as NAME X.Y.Z, never overwriting; prints the
    /// source string for terragrunt.hcl.
    Publish {
        /// The module's directory (its .tf files at the top).
        dir: PathBuf,
        /// The module's name.
        #[arg(long, env = "TFMOD_NAME")]
        name: String,
        /// Its semantic version X.Y.Z (no leading v, no +build).
        #[arg(long = "version", env = "TFMOD_VERSION", value_name = "X.Y.Z")]
        module_version: String,
        #[command(flatten)]
        store: StoreArgs,
        /// The git revision recorded (default: `git rev-parse HEAD` in DIR, `-dirty` if it has
        /// uncommitted changes).
        #[arg(long, env = "TFMOD_GIT_REVISION")]
        git_revision: Option<String>,
        /// Who publishes (default: $USER).
        #[arg(long, env = "TFMOD_PUBLISHER")]
        publisher: Option<String>,
        /// A prefix of nested module sources (the module's own `module` blocks) allowed although
        /// they are not inside the archive, e.g. git::https://github.com/acme/; an s3:: source
        /// also needs ?checksum=. Repeatable; comma-separated in the variable.
        #[arg(
            long = "allow-module-source",
            env = "TFMOD_ALLOW_MODULE_SOURCE",
            value_delimiter = ',',
            value_name = "PREFIX"
        )]
        allow_module_source: Vec<String>,
    },
    /// List a module's published versions, in SemVer order.
    Versions {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a version's checksum and metadata (NAME@X.Y.Z).
    Show {
        #[arg(value_name = "NAME@X.Y.Z")]
        spec: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Point every terragrunt.hcl below DIR that uses module NAME at version X.Y.Z (with its
    /// checksum), and update the lock of DIR's stage (the nearest tfmod.lock at or above DIR).
    Pin {
        name: String,
        #[arg(value_name = "X.Y.Z")]
        version: String,
        /// The stage directory.
        #[arg(long, env = "TFMOD_DIR", default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Move NAME X.Y.Z from the stage that tested it to the next: the --from stages' lock lines
    /// are copied into the --to stages (ROOT/LAYOUT), after checking S3 still serves those bytes.
    Promote {
        name: String,
        #[arg(value_name = "X.Y.Z")]
        version: String,
        /// The stage that tested the version (dev, staging, …).
        #[arg(long, env = "TFMOD_FROM")]
        from: String,
        /// The stage to promote to (staging, prod, …).
        #[arg(long, env = "TFMOD_TO")]
        to: String,
        /// Where the live tree starts.
        #[arg(long, env = "TFMOD_ROOT", default_value = "live")]
        root: PathBuf,
        /// Where stages are below ROOT: `/`-separated, `*` for any one directory, `{stage}` for
        /// the stage's name.
        #[arg(long, env = "TFMOD_LAYOUT", default_value = "*/*/{stage}")]
        layout: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a version (NAME@X.Y.Z): a tombstone is written first, so the number is never
    /// published again.
    Delete {
        #[arg(value_name = "NAME@X.Y.Z")]
        spec: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write DIR/tfmod.lock: the SHA-256 of each s3:: module source used below DIR.
    Lock {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Check every s3:: source below DIR against the nearest tfmod.lock; one line per problem,
    /// exit 1 if any (the Atlantis pre-workflow hook).
    Verify {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Each `tfmod SUB …` form docs/tfmod.md gives names every flag SUB requires.
    #[test]
    fn the_docs_give_every_required_flag() {
        let docs = include_str!("../../../docs/tfmod.md");
        // The command table's first cells: `tfmod pin vpc 1.3.0 --bucket B …` / `tfmod …`.
        let forms: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `tfmod "))
            .filter_map(|l| l.split(" | ").next())
            .flat_map(|cell| cell.split('`').step_by(2))
            .map(str::trim)
            .filter(|f| !f.is_empty() && *f != "/")
            .collect();
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            let given: Vec<String> = forms
                .iter()
                .map(|f| {
                    if f.starts_with("tfmod ") {
                        f.to_string()
                    } else {
                        format!("tfmod {f}")
                    }
                })
                .filter(|f| f.split_whitespace().nth(1) == Some(name))
                .collect();
            assert!(!given.is_empty(), "docs/tfmod.md has no `tfmod {name} …`");
            for arg in sub.get_arguments().filter(|a| a.is_required_set()) {
                let Some(long) = arg.get_long() else { continue };
                let flag = format!("--{long}");
                for form in &given {
                    if !form.split_whitespace().any(|w| w == flag) {
                        missing.push(format!("`{form}` lacks {flag}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
