//! Publishing: immutable versions, the same bytes twice is a no-op, exit codes.

use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};

use crate::harness::{self, bucket, moto_source, object, tfmod, version_count};

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

async fn same_bytes_twice_is_a_noop_and_other_bytes_are_refused(versioned: bool) {
    let b = bucket(versioned).await;
    let work = tempfile::tempdir().unwrap();
    let m = work.path().join("vpc");
    harness::module(&m, "first");
    let args = [
        "publish",
        "vpc",
        "--name",
        "vpc",
        "--version",
        "1.0.0",
        "--bucket",
        &b,
        "--prefix",
        "tf",
    ];

    let first = tfmod(work.path(), &args);
    assert_eq!(first.code, 0);
    let stored = object(&b, "tf/vpc/1.0.0.zip")
        .await
        .expect("archive stored");
    let source = first.stdout.trim();
    assert!(
        source.starts_with(&moto_source(&b, "tf/vpc/1.0.0.zip"))
            && source.ends_with(&format!(
                "checksum=sha256:{}",
                tfmod::archive::sha256_hex(&stored)
            )),
        "{source}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&object(&b, "tf/vpc/1.0.0.json").await.expect("metadata")).unwrap();
    assert_eq!(meta["sha256"], tfmod::archive::sha256_hex(&stored));
    assert_eq!(meta["version"], "1.0.0");

    // Again, and from a second checkout of the same tree: done, nothing written.
    let again = tfmod(work.path(), &args);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert_eq!(again.stdout, first.stdout);

    // Other bytes under the same version: refused with exit 4, the object untouched.
    std::fs::write(m.join("main.tf"), "# a change\n").unwrap();
    let other = tfmod(work.path(), &args);
    assert_eq!(other.code, 4, "{}", other.stderr);
    assert!(
        other
            .stderr
            .contains("already published with different bytes"),
        "{}",
        other.stderr
    );
    assert_eq!(
        other
            .stderr
            .lines()
            .filter(|l| l.starts_with("tfmod: error"))
            .count(),
        1,
        "one line"
    );
    let after = object(&b, "tf/vpc/1.0.0.zip").await.unwrap();
    assert_eq!(sha(&after), sha(&stored));
    assert_eq!(
        version_count(&b, "tf/vpc/1.0.0.zip").await,
        1,
        "never a second version"
    );

    // The change is published as a new version instead.
    let args2 = [
        "publish",
        "vpc",
        "--name",
        "vpc",
        "--version",
        "1.0.1",
        "--bucket",
        &b,
        "--prefix",
        "tf",
    ];
    assert_eq!(tfmod(work.path(), &args2).code, 0);
}

#[tokio::test]
async fn publish_is_immutable_on_an_unversioned_bucket() {
    same_bytes_twice_is_a_noop_and_other_bytes_are_refused(false).await;
}

#[tokio::test]
async fn publish_is_immutable_on_a_versioned_bucket() {
    same_bytes_twice_is_a_noop_and_other_bytes_are_refused(true).await;
}

/// What moto 5.2.5 does with `If-None-Match: *` on PutObject (AWS S3 answers 412).
#[tokio::test]
async fn moto_honours_if_none_match_on_put_object() {
    for versioned in [false, true] {
        let b = bucket(versioned).await;
        let s3 = harness::s3();
        let put = |body: &'static str| {
            s3.put_object()
                .bucket(&b)
                .key("k")
                .if_none_match("*")
                .body(ByteStream::from_static(body.as_bytes()))
                .send()
        };
        put("one").await.expect("first conditional put");
        let second = put("two")
            .await
            .expect_err("second conditional put is refused");
        assert_eq!(
            second.raw_response().map(|r| r.status().as_u16()),
            Some(412),
            "{second:?}"
        );
        assert_eq!(object(&b, "k").await.unwrap(), b"one");
    }
}

#[tokio::test]
async fn versions_are_listed_in_semver_order_and_show_checks_the_archive() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    for v in ["1.10.0", "1.2.0", "1.0.0", "2.0.0-rc.1"] {
        harness::module(&work.path().join(v), v);
        let r = tfmod(
            work.path(),
            &[
                "publish",
                v,
                "--name",
                "app",
                "--version",
                v,
                "--bucket",
                &b,
                "--git-revision",
                "abc123",
                "--publisher",
                "ci",
            ],
        );
        assert_eq!(r.code, 0);
    }
    let list = tfmod(work.path(), &["versions", "app", "--bucket", &b]);
    assert_eq!(list.stdout, "1.0.0\n1.2.0\n1.10.0\n2.0.0-rc.1\n");

    let show = tfmod(work.path(), &["show", "app@1.2.0", "--bucket", &b]);
    assert_eq!(show.code, 0);
    for line in [
        "version: 1.2.0",
        "git_revision: abc123",
        "published_by: ci",
        "archive: intact",
    ] {
        assert!(show.stdout.contains(line), "{line} in {}", show.stdout);
    }
    assert_eq!(
        tfmod(work.path(), &["show", "app@9.9.9", "--bucket", &b]).code,
        5
    );
    assert_eq!(
        tfmod(work.path(), &["versions", "nope", "--bucket", &b]).code,
        5
    );
}

#[tokio::test]
async fn bad_usage_exits_2_naming_the_value() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    harness::module(work.path(), "x");
    for (args, says) in [
        (
            vec![
                "publish",
                ".",
                "--name",
                "vpc",
                "--version",
                "v1.0.0",
                "--bucket",
                &b,
            ],
            "no leading 'v'; write 1.0.0",
        ),
        (
            vec![
                "publish",
                ".",
                "--name",
                "vpc",
                "--version",
                "1.0",
                "--bucket",
                &b,
            ],
            "is not a semantic version MAJOR.MINOR.PATCH (",
        ),
        // The version suggested instead is one tfmod accepts.
        (
            vec![
                "publish",
                ".",
                "--name",
                "vpc",
                "--version",
                "v1.2",
                "--bucket",
                &b,
            ],
            "; write 1.2.0",
        ),
        (
            vec![
                "publish",
                ".",
                "--name",
                "VPC",
                "--version",
                "1.0.0",
                "--bucket",
                &b,
            ],
            "--name",
        ),
        (
            vec![
                "publish",
                ".",
                "--name",
                "vpc",
                "--version",
                "1.0.0",
                "--bucket",
                "my.bucket",
            ],
            "dots",
        ),
        (vec!["show", "vpc", "--bucket", &b], "NAME@X.Y.Z"),
    ] {
        let r = tfmod(work.path(), &args);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.stderr.contains(says), "{says} in {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    }
}

#[tokio::test]
async fn s3_unreachable_exits_3() {
    let port = eipool_lab::servers::free_port().unwrap();
    let work = tempfile::tempdir().unwrap();
    harness::module(work.path(), "x");
    let r = harness::tfmod_at(
        work.path(),
        &format!("http://127.0.0.1:{port}"),
        &[
            "publish",
            ".",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            "nobody-listens",
        ],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("S3 unavailable"), "{}", r.stderr);
}

/// Only the module is published: what .gitignore names, state, plans, override files, crash
/// logs and auto-loaded variable files stay local; a tree with changes is recorded as dirty.
#[tokio::test]
async fn publish_packs_only_the_module_and_records_a_dirty_tree() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    let m = work.path().join("vpc");
    harness::module(&m, "x");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&m)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    std::fs::write(m.join(".gitignore"), "secrets.auto.tfvars\nlocal/\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "vpc"]);
    let head = git(&["rev-parse", "HEAD"]);
    for f in [
        "secrets.auto.tfvars",
        "local/notes.tf",
        "override.tf",
        "dev_override.tf.json",
        "terraform.tfstate.1700000000.backup",
        "plan.tfplan",
        "crash.log",
        "prod.auto.tfvars.json",
        "terraform.tfvars",
    ] {
        std::fs::create_dir_all(m.join(f).parent().unwrap()).unwrap();
        std::fs::write(m.join(f), "password = \"hunter2\"\n").unwrap();
    }
    let r = tfmod(
        work.path(),
        &[
            "publish",
            "vpc",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            &b,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let meta: serde_json::Value =
        serde_json::from_slice(&object(&b, "vpc/1.0.0.json").await.unwrap()).unwrap();
    let files: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            ".gitignore",
            "main.tf",
            "modules/subnets/main.tf",
            "outputs.tf",
            "variables.tf"
        ]
    );
    assert_eq!(
        meta["git_revision"], head,
        "nothing packed differs from HEAD"
    );

    // A tracked file changed: the revision says so.
    std::fs::write(m.join("main.tf"), "# changed\n").unwrap();
    let r = tfmod(
        work.path(),
        &[
            "publish",
            "vpc",
            "--name",
            "vpc",
            "--version",
            "1.0.1",
            "--bucket",
            &b,
        ],
    );
    assert_eq!(r.code, 0);
    let meta: serde_json::Value =
        serde_json::from_slice(&object(&b, "vpc/1.0.1.json").await.unwrap()).unwrap();
    assert_eq!(meta["git_revision"], format!("{head}-dirty"));
}

/// A published module's own `module` blocks are code Terraform fetches when it is used: a git
/// branch, a registry version range or an S3 object without ?checksum= would run unchecked
/// bytes. publish refuses every source that is not inside the archive, unless
/// --allow-module-source names its prefix; an s3:: source needs ?checksum= even then.
#[tokio::test]
async fn publish_refuses_nested_module_sources_from_elsewhere() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    let m = work.path().join("m");
    harness::module(&m, "nested");
    harness::write(
        &m.join("nested.tf"),
        "module \"subnets\" {\n  source = \"./modules/subnets\"\n}\nmodule \"net\" {\n  source = \"git::https://github.com/acme/net.git?ref=main\"\n}\nmodule \"sg\" {\n  source  = \"terraform-aws-modules/security-group/aws\"\n  version = \">= 4.0\"\n}\nmodule \"blob\" {\n  source = \"s3::https://other-bucket.s3.eu-west-1.amazonaws.com/x.zip\"\n}\n",
    );
    harness::write(
        &m.join("modules/subnets/up.tf.json"),
        "{\"module\": {\"up\": {\"source\": \"../../../outside\"}}}",
    );
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            "m",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            &b,
        ];
        args.extend_from_slice(extra);
        tfmod(work.path(), &args)
    };
    let r = publish(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for name in ["\"net\"", "\"sg\"", "\"blob\"", "\"up\""] {
        assert!(r.stderr.contains(name), "{name}: {}", r.stderr);
    }
    assert!(!r.stderr.contains("\"subnets\""), "{}", r.stderr);
    assert!(
        harness::object(&b, "vpc/1.0.0.zip").await.is_none(),
        "nothing stored"
    );

    // Allowed by prefix: git and the registry; the S3 object still needs its checksum, and the
    // path out of the archive is never allowed.
    let r = publish(&[
        "--allow-module-source",
        "git::https://github.com/acme/",
        "--allow-module-source",
        "terraform-aws-modules/,s3::https://other-bucket.",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        !r.stderr.contains("\"net\"") && !r.stderr.contains("\"sg\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("\"blob\"") && r.stderr.contains("checksum"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\"up\""), "{}", r.stderr);
}

/// Inside git, what is published is what git tracks: files git ignores (.git/info/exclude, the
/// global excludes file) stay out, an untracked file that would be packed is refused (commit,
/// delete or ignore it), and secrets are never packed even when committed (.env*, *.pem, *.key,
/// id_*, .netrc, *.tfvars but examples).
#[tokio::test]
async fn publish_packs_what_git_tracks_and_never_a_secret() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    let m = work.path().join("vpc");
    harness::module(&m, "x");
    let gitconfig = work.path().join("gitconfig");
    let global_ignore = work.path().join("global-ignore");
    std::fs::write(&global_ignore, "*.local\n").unwrap();
    std::fs::write(
        &gitconfig,
        format!("[core]\n\texcludesFile = {}\n", global_ignore.display()),
    )
    .unwrap();
    let env = [("GIT_CONFIG_GLOBAL", gitconfig.to_str().unwrap())];
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&m)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", &gitconfig)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    // Committed by mistake: never packed all the same.
    for f in [
        ".envrc",
        "id_ed25519",
        ".netrc",
        "certs/server.key",
        "certs/ca.pem",
        "prod.tfvars",
        "example.tfvars",
    ] {
        harness::write(&m.join(f), "secret = \"hunter2\"\n");
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "vpc"]);
    // Ignored by git's own files, not by .gitignore: never packed.
    std::fs::write(m.join(".git/info/exclude"), "secret.env\n").unwrap();
    harness::write(&m.join("secret.env"), "TOKEN=hunter2\n");
    harness::write(&m.join("notes.local"), "hunter2\n");
    let publish = |version: &str| {
        harness::tfmod_env(
            work.path(),
            &harness::moto().endpoint,
            &env,
            &[
                "publish",
                "vpc",
                "--name",
                "vpc",
                "--version",
                version,
                "--bucket",
                &b,
            ],
        )
    };
    let r = publish("1.0.0");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let meta: serde_json::Value =
        serde_json::from_slice(&object(&b, "vpc/1.0.0.json").await.unwrap()).unwrap();
    let files: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "example.tfvars",
            "main.tf",
            "modules/subnets/main.tf",
            "outputs.tf",
            "variables.tf"
        ]
    );
    for f in [
        ".envrc",
        "id_ed25519",
        ".netrc",
        "certs/server.key",
        "prod.tfvars",
    ] {
        assert!(r.stderr.contains(f), "{f} listed as left out: {}", r.stderr);
    }

    // An untracked file that would be packed: refused, nothing stored.
    harness::write(&m.join("extra.tf"), "# not committed\n");
    let r = publish("1.0.1");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("extra.tf") && r.stderr.contains("untracked"),
        "{}",
        r.stderr
    );
    assert!(object(&b, "vpc/1.0.1.zip").await.is_none());
}
