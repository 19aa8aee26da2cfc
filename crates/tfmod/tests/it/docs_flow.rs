//! The promotion flow docs/tfmod.md gives, run line by line as written (only the bucket's name
//! is swapped for the test's).

use crate::harness::{self, bucket, tfmod, unit, write};

#[tokio::test]
async fn the_documented_promotion_flow_runs_as_written() {
    let docs = include_str!("../../../../docs/tfmod.md");
    let block: Vec<&str> = docs
        .split("<!-- promotion-flow -->")
        .nth(1)
        .expect("docs/tfmod.md marks the promotion flow with <!-- promotion-flow -->")
        .split("```")
        .nth(1)
        .expect("a fenced block after the marker")
        .lines()
        .filter(|l| l.starts_with("tfmod "))
        .collect();
    assert!(block.len() >= 5, "{block:?}");

    let b = bucket(true).await;
    let repo = tempfile::tempdir().unwrap();
    harness::module(&repo.path().join("modules/vpc"), "1.0.0");
    let first = tfmod(
        repo.path(),
        &[
            "publish",
            "modules/vpc",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            &b,
            "--prefix",
            "tf",
        ],
    );
    assert_eq!(first.code, 0);
    write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
    for stage in ["dev", "staging", "prod"] {
        let d = repo.path().join("live/acme-prod/eu-west-1").join(stage);
        write(&d.join("vpc/terragrunt.hcl"), &unit(first.stdout.trim()));
        assert_eq!(tfmod(&d, &["lock"]).code, 0);
    }
    harness::module(&repo.path().join("modules/vpc"), "1.1.0");

    for line in block {
        let line = line.replace("acme-tf-modules", &b);
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let r = tfmod(repo.path(), &args);
        assert_eq!(r.code, 0, "`{line}`: {}{}", r.stdout, r.stderr);
    }
    let prod = std::fs::read_to_string(
        repo.path()
            .join("live/acme-prod/eu-west-1/prod/vpc/terragrunt.hcl"),
    )
    .unwrap();
    assert!(prod.contains("tf/vpc/1.1.0.zip"), "{prod}");
}
