//! One moto server per test process (eipool-lab's starter: free loopback port, killed with
//! us), a fresh bucket per test, and the real `tfmod` binary run with only moto's endpoint and
//! dummy credentials in its AWS environment.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_s3::Client;
use eipool_lab::servers::Moto;

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("moto_server starts (run scripts/bootstrap)"))
}

/// An S3 client for moto, for setting up and tampering.
pub fn s3() -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&moto().endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    Client::from_conf(conf)
}

/// A new, empty bucket; versioned or not.
pub async fn bucket(versioned: bool) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "tfmod-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let s3 = s3();
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    if versioned {
        s3.put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
    }
    name
}

pub async fn object(bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = s3()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

pub async fn version_count(bucket: &str, key: &str) -> usize {
    let out = s3()
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .expect("list versions");
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .count()
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tfmod ARGS` in `cwd` against moto.
pub fn tfmod(cwd: &Path, args: &[&str]) -> Run {
    tfmod_at(cwd, &moto().endpoint, args)
}

/// Runs `tfmod ARGS` with AWS_ENDPOINT_URL_S3 set to `endpoint`.
pub fn tfmod_at(cwd: &Path, endpoint: &str, args: &[&str]) -> Run {
    tfmod_env(cwd, endpoint, &[], args)
}

/// A small module tree, plus what must stay out of its archive.
pub fn module(dir: &Path, marker: &str) {
    let w = |p: &str, s: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w(
        "main.tf",
        &format!("resource \"null_resource\" \"x\" {{}}\n# {marker}\n"),
    );
    w("variables.tf", "variable \"cidr\" {\n  type = string\n}\n");
    w(
        "outputs.tf",
        "output \"id\" {\n  value = null_resource.x.id\n}\n",
    );
    w("modules/subnets/main.tf", "variable \"n\" {}\n");
    w(".terraform/modules/modules.json", "{}");
    w(".terraform.lock.hcl", "# provider locks\n");
    w("tests/basic.tftest.hcl", "run \"x\" {}\n");
    w("terraform.tfstate", "{}");
}

/// The source tfmod prints for a key in a moto bucket.
pub fn moto_source(bucket: &str, key: &str) -> String {
    format!("s3::{}/{bucket}/{key}?region=us-east-1", moto().endpoint)
}

/// Writes `s` to `p`, creating its directories.
pub fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A Terragrunt unit whose own `terraform { source }` is `source`.
pub fn unit(source: &str) -> String {
    format!(
        "include \"root\" {{\n  path = find_in_parent_folders(\"root.hcl\")\n}}\n\nterraform {{\n  source = \"{source}\" # pinned\n}}\n\ninputs = {{\n  cidr = \"10.0.0.0/16\"\n}}\n"
    )
}

/// Publishes `modules/NAME` (made with `marker`) below `repo` as NAME VERSION; the source printed.
pub fn publish(repo: &Path, bucket: &str, name: &str, version: &str, marker: &str) -> String {
    let dir = format!("modules/{name}-{version}");
    module(&repo.join(&dir), marker);
    let r = tfmod(
        repo,
        &[
            "publish",
            &dir,
            "--name",
            name,
            "--version",
            version,
            "--bucket",
            bucket,
        ],
    );
    assert_eq!(r.code, 0, "publish {name} {version}: {}", r.stderr);
    r.stdout.trim().to_string()
}

/// Replaces an object's bytes behind tfmod's back (someone with write access).
pub async fn replace(bucket: &str, key: &str, body: &'static [u8]) {
    s3().put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
        .send()
        .await
        .expect("replace the object");
}

/// Runs `tfmod ARGS` with AWS_ENDPOINT_URL_S3 set to `endpoint` and `extra` in its environment.
pub fn tfmod_env(cwd: &Path, endpoint: &str, extra: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = command(cwd, endpoint, args);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    finish(args, cmd.output().expect("run tfmod"))
}

/// The command `tfmod_at` runs (for tests that spawn it themselves).
pub fn command(cwd: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tfmod"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("AWS_") || k.starts_with("TFMOD_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(cwd)
        .args(args)
        .env("AWS_ENDPOINT_URL_S3", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn finish(args: &[&str], out: std::process::Output) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "tfmod {} → {}\n{}{}",
        args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// Every file below `dir` and its contents (to show that nothing changed).
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
