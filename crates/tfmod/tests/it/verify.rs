//! Pins, locks and the Atlantis hook: a changed object or an unlocked source fails closed.

use aws_sdk_s3::primitives::ByteStream;

use crate::harness::{self, bucket, moto_source, tfmod, write};

fn component(source: &str) -> String {
    format!(
        "# Managed with tfmod: promote with `tfmod promote`.\ninclude \"root\" {{\n  path = find_in_parent_folders(\"root.hcl\")\n}}\n\nterraform {{\n  source = \"{source}\" # pinned\n}}\n\ninputs = {{\n  cidr = \"10.0.0.0/16\"\n}}\n"
    )
}

/// Publishes `vpc` 1.0.0 and builds live/acme-prod/us-east-1/{dev,staging,prod}/{vpc,app}.
async fn live_repo(b: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    harness::module(&repo.path().join("modules/vpc"), "1.0.0");
    let r = tfmod(
        repo.path(),
        &[
            "publish",
            "modules/vpc",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            b,
        ],
    );
    assert_eq!(r.code, 0);
    let source = r.stdout.trim().to_string();
    for stage in ["dev", "staging", "prod"] {
        let d = repo.path().join("live/acme-prod/us-east-1").join(stage);
        write(&d.join("vpc/terragrunt.hcl"), &component(&source));
        // A unit without a module source of its own (its .tf files are in the unit): verify
        // --bucket is told to allow it (--allow-local-code app).
        write(&d.join("app/terragrunt.hcl"), "inputs = {}\n");
    }
    write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
    repo
}

#[tokio::test]
async fn verify_passes_after_lock_and_catches_a_changed_object() {
    for versioned in [false, true] {
        let b = bucket(versioned).await;
        let repo = live_repo(&b).await;
        let staging = repo.path().join("live/acme-prod/us-east-1/staging");
        assert_eq!(tfmod(&staging, &["lock"]).code, 0);
        let lock = std::fs::read_to_string(staging.join("tfmod.lock")).unwrap();
        assert!(lock.contains(&moto_source(&b, "vpc/1.0.0.zip")), "{lock}");
        assert_eq!(lock.lines().filter(|l| l.starts_with("sha256:")).count(), 1);

        let ok = tfmod(
            &staging,
            &["verify", "--bucket", &b, "--allow-local-code", "app"],
        );
        assert_eq!(ok.code, 0, "{}", ok.stdout);

        // Someone with write access replaces the object behind the version.
        harness::s3()
            .put_object()
            .bucket(&b)
            .key("vpc/1.0.0.zip")
            .body(ByteStream::from_static(b"PK not the module"))
            .send()
            .await
            .unwrap();
        let bad = tfmod(&staging, &["verify"]);
        if versioned {
            // The lock (and the source) name the version that was published: that is what
            // verify reads and what terraform init fetches, so the replacement is not used.
            assert_eq!(bad.code, 0, "{}", bad.stdout);
            continue;
        }
        assert_eq!(bad.code, 1);
        assert_eq!(bad.stdout.lines().count(), 1, "one line per problem");
        assert!(
            bad.stdout.contains("differs from the locked"),
            "{}",
            bad.stdout
        );
        // And lock refuses to record the changed bytes: they differ from the published checksum.
        let relock = tfmod(&staging, &["lock"]);
        assert_eq!(relock.code, 1);
        assert!(
            relock.stdout.contains("recorded when it was published"),
            "{}",
            relock.stdout
        );
    }
}

#[tokio::test]
async fn verify_fails_closed_on_unlocked_and_untrusted_sources() {
    let b = bucket(false).await;
    let other = bucket(false).await;
    let repo = live_repo(&b).await;
    let live = repo.path().join("live");

    // No lock anywhere: every s3:: source is a problem (three stages).
    let r = tfmod(&live, &["verify"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    assert!(
        r.stdout.lines().all(|l| l.contains("no tfmod.lock")),
        "{}",
        r.stdout
    );

    let prod = live.join("acme-prod/us-east-1/prod");
    assert_eq!(tfmod(&prod, &["lock"]).code, 0);
    // A new component whose source the lock lacks.
    harness::module(&repo.path().join("modules/dns"), "dns");
    let dns = tfmod(
        repo.path(),
        &[
            "publish",
            "modules/dns",
            "--name",
            "dns",
            "--version",
            "0.1.0",
            "--bucket",
            &b,
        ],
    );
    write(
        &prod.join("dns/terragrunt.hcl"),
        &component(dns.stdout.trim()),
    );
    let r = tfmod(&prod, &["verify"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("dns/terragrunt.hcl: source") && r.stdout.contains("is not in"),
        "{}",
        r.stdout
    );

    // With the trusted store named (as in the Atlantis hook), a source elsewhere is refused.
    std::fs::remove_dir_all(prod.join("dns")).unwrap();
    harness::module(&repo.path().join("modules/evil"), "evil");
    let evil = tfmod(
        repo.path(),
        &[
            "publish",
            "modules/evil",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            &other,
        ],
    );
    write(
        &prod.join("vpc/terragrunt.hcl"),
        &component(evil.stdout.trim()),
    );
    assert_eq!(
        tfmod(&prod, &["lock"]).code,
        0,
        "lock alone does not know whom to trust"
    );
    let r = tfmod(
        &prod,
        &["verify", "--bucket", &b, "--allow-local-code", "app"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("not from the trusted store"),
        "{}",
        r.stdout
    );

    // A computed source cannot be checked.
    write(
        &prod.join("vpc/terragrunt.hcl"),
        "locals { v = \"1.0.0\" }\nterraform {\n  source = \"s3::http://x/b/vpc/${local.v}.zip\"\n}\n",
    );
    let r = tfmod(&prod, &["verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("computed"), "{}", r.stdout);
}

#[tokio::test]
async fn promote_rewrites_one_stage_keeps_its_comments_and_relocks() {
    let b = bucket(true).await;
    let repo = live_repo(&b).await;
    harness::module(&repo.path().join("modules/vpc"), "1.1.0");
    let r = tfmod(
        repo.path(),
        &[
            "publish",
            "modules/vpc",
            "--name",
            "vpc",
            "--version",
            "1.1.0",
            "--bucket",
            &b,
        ],
    );
    assert_eq!(r.code, 0);
    let new_source = r.stdout.trim().to_string();
    let stage = |s: &str| repo.path().join("live/acme-prod/us-east-1").join(s);
    let before = std::fs::read_to_string(stage("staging").join("vpc/terragrunt.hcl")).unwrap();
    let old_source = before
        .split('"')
        .find(|s| s.starts_with("s3::"))
        .unwrap()
        .to_string();
    for s in ["dev", "staging", "prod"] {
        assert_eq!(tfmod(&stage(s), &["lock"]).code, 0);
    }
    let dir = stage("dev");
    let pin = tfmod(
        repo.path(),
        &[
            "pin",
            "vpc",
            "1.1.0",
            "--dir",
            dir.to_str().unwrap(),
            "--bucket",
            &b,
        ],
    );
    assert_eq!(pin.code, 0, "{}", pin.stderr);

    let p = tfmod(
        repo.path(),
        &[
            "promote", "vpc", "1.1.0", "--from", "dev", "--to", "staging", "--bucket", &b,
        ],
    );
    assert_eq!(p.code, 0, "{}", p.stderr);
    let after = std::fs::read_to_string(stage("staging").join("vpc/terragrunt.hcl")).unwrap();
    assert_eq!(
        after,
        before.replace(&old_source, &new_source),
        "only the source string changed"
    );
    assert_eq!(
        std::fs::read_to_string(stage("prod").join("vpc/terragrunt.hcl")).unwrap(),
        before,
        "prod untouched"
    );
    assert!(std::fs::read_to_string(stage("staging").join("tfmod.lock"))
        .unwrap()
        .contains("vpc/1.1.0.zip"));
    for s in ["dev", "staging", "prod"] {
        assert_eq!(
            tfmod(
                &stage(s),
                &["verify", "--bucket", &b, "--allow-local-code", "app"]
            )
            .code,
            0,
            "{s}"
        );
    }

    // An unpublished version cannot be pinned; a stage that does not exist is bad usage.
    assert_eq!(
        tfmod(
            repo.path(),
            &[
                "pin",
                "vpc",
                "1.2.0",
                "--dir",
                dir.to_str().unwrap(),
                "--bucket",
                &b
            ]
        )
        .code,
        5
    );
    assert_eq!(
        tfmod(
            repo.path(),
            &["promote", "vpc", "1.1.0", "--from", "dev", "--to", "qa", "--bucket", &b]
        )
        .code,
        2
    );
}
