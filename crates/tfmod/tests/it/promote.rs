//! Promotion moves what was tested: staging's lock lines, matched by the layout, all or nothing.

use std::path::{Path, PathBuf};

use crate::harness::{bucket, publish, replace, snapshot, tfmod, unit, write};

/// live/prod/eu-west-1/{dev,staging,prod}/vpc — the account is named `prod` too — all at vpc
/// 1.0.0 and locked; 1.1.0 published and pinned in staging.
struct Live {
    repo: tempfile::TempDir,
    b: String,
}

impl Live {
    async fn new(versioned: bool) -> Live {
        let b = bucket(versioned).await;
        let repo = tempfile::tempdir().unwrap();
        let v1 = publish(repo.path(), &b, "vpc", "1.0.0", "1.0.0");
        publish(repo.path(), &b, "vpc", "1.1.0", "1.1.0");
        write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
        let live = Live { repo, b };
        for s in ["dev", "staging", "prod"] {
            write(&live.stage(s).join("vpc/terragrunt.hcl"), &unit(&v1));
            assert_eq!(tfmod(&live.stage(s), &["lock"]).code, 0);
        }
        let p = tfmod(
            live.repo.path(),
            &[
                "pin",
                "vpc",
                "1.1.0",
                "--dir",
                "live/prod/eu-west-1/staging",
                "--bucket",
                &live.b,
            ],
        );
        assert_eq!(p.code, 0, "{}", p.stderr);
        live
    }
    fn stage(&self, s: &str) -> PathBuf {
        self.repo.path().join("live/prod/eu-west-1").join(s)
    }
    fn read(&self, p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }
    fn lock_line(&self, s: &str, version: &str) -> String {
        self.read(&self.stage(s).join("tfmod.lock"))
            .lines()
            .find(|l| l.contains(&format!("/vpc/{version}.zip")))
            .unwrap_or_else(|| panic!("{s} locks no vpc {version}"))
            .to_string()
    }
    fn promote(&self, version: &str, from: &str, to: &str) -> crate::harness::Run {
        tfmod(
            self.repo.path(),
            &[
                "promote", "vpc", version, "--from", from, "--to", to, "--bucket", &self.b,
            ],
        )
    }
}

#[tokio::test]
async fn promote_copies_stagings_lock_lines_into_the_stage_the_layout_names() {
    let live = Live::new(true).await;
    let staging_before = live.read(&live.stage("staging").join("vpc/terragrunt.hcl"));
    let staged = live.lock_line("staging", "1.1.0");

    let p = live.promote("1.1.0", "staging", "prod");
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        live.lock_line("prod", "1.1.0"),
        staged,
        "staging's line, as is"
    );
    let prod_unit = live.read(&live.stage("prod").join("vpc/terragrunt.hcl"));
    let sha = staged
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("sha256:");
    assert!(
        prod_unit.contains(&format!("checksum=sha256:{sha}")),
        "{prod_unit}"
    );
    assert!(!live.lock_line("prod", "1.1.0").is_empty());
    // Only the stage the layout names (live/*/*/prod), not the account directory named prod.
    assert_eq!(
        live.read(&live.stage("staging").join("vpc/terragrunt.hcl")),
        staging_before
    );
    assert!(!live.repo.path().join("live/prod/tfmod.lock").exists());
    assert!(live
        .read(&live.stage("dev").join("vpc/terragrunt.hcl"))
        .contains("/vpc/1.0.0.zip"));
    let v = tfmod(live.repo.path(), &["verify", "live", "--bucket", &live.b]);
    assert_eq!(v.code, 0, "{}", v.stdout);

    // Replaced in S3 after staging locked it: on a versioned bucket staging's line names the
    // version it tested, so that is what prod gets (and init fetches).
    replace(&live.b, "vpc/1.1.0.zip", b"PK replaced").await;
    replace(&live.b, "vpc/1.1.0.json", b"{}").await;
    let p = live.promote("1.1.0", "staging", "dev");
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(live.lock_line("dev", "1.1.0"), staged);
}

#[tokio::test]
async fn promote_refuses_when_s3_differs_from_what_staging_locked() {
    let live = Live::new(false).await;
    let before = snapshot(&live.repo.path().join("live"));
    replace(&live.b, "vpc/1.1.0.zip", b"PK replaced").await;
    replace(&live.b, "vpc/1.1.0.json", b"{}").await;
    let p = live.promote("1.1.0", "staging", "prod");
    assert_eq!(p.code, 1, "{}", p.stderr);
    assert!(p.stdout.contains("vpc/1.1.0.zip"), "{}", p.stdout);
    assert_eq!(
        snapshot(&live.repo.path().join("live")),
        before,
        "nothing written"
    );

    // A version staging never locked is not promoted.
    let p = live.promote("1.1.0", "dev", "prod");
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(p.stderr.contains("dev"), "{}", p.stderr);
}

#[tokio::test]
async fn promote_validates_every_file_before_writing_any() {
    let live = Live::new(false).await;
    // Two prod stages (another account); one unit of the second cannot be parsed.
    let other = live.repo.path().join("live/zeta/eu-west-1/prod");
    write(
        &other.join("vpc/terragrunt.hcl"),
        &live.read(&live.stage("prod").join("vpc/terragrunt.hcl")),
    );
    std::fs::copy(
        live.stage("prod").join("tfmod.lock"),
        other.join("tfmod.lock"),
    )
    .unwrap();
    write(
        &other.join("broken/terragrunt.hcl"),
        "terraform {\n  source = \n",
    );
    let before = snapshot(&live.repo.path().join("live"));
    let p = live.promote("1.1.0", "staging", "prod");
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(p.stderr.contains("broken/terragrunt.hcl"), "{}", p.stderr);
    assert_eq!(
        snapshot(&live.repo.path().join("live")),
        before,
        "nothing written"
    );
}

/// `pin --dir` on one unit updates the stage's lock; no nested lock breaks the stage's verify.
#[tokio::test]
async fn pin_on_a_unit_updates_its_stages_lock() {
    let live = Live::new(false).await;
    let p = tfmod(
        live.repo.path(),
        &[
            "pin",
            "vpc",
            "1.1.0",
            "--dir",
            "live/prod/eu-west-1/dev/vpc",
            "--bucket",
            &live.b,
        ],
    );
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(!live.stage("dev").join("vpc/tfmod.lock").exists());
    assert!(live.lock_line("dev", "1.1.0").contains("1.1.0"));
    let v = tfmod(&live.stage("dev"), &["verify", "--bucket", &live.b]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

/// A source written in a file every stage includes is not rewritten for one stage: pin refuses
/// and writes nothing (the unit's own `terraform { source }` would override the include).
#[tokio::test]
async fn pin_refuses_to_rewrite_a_source_shared_by_every_stage() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let v1 = publish(repo.path(), &b, "vpc", "1.0.0", "1.0.0");
    publish(repo.path(), &b, "vpc", "1.1.0", "1.1.0");
    let live = repo.path().join("live");
    write(&live.join("root.hcl"), "# remote_state …\n");
    write(
        &live.join("_envcommon/vpc.hcl"),
        &format!("terraform {{\n  source = \"{v1}\"\n}}\n"),
    );
    for s in ["dev", "prod"] {
        write(
            &live.join("acme/eu-west-1").join(s).join("vpc/terragrunt.hcl"),
            "include \"envcommon\" {\n  path = \"${get_terragrunt_dir()}/../../../../_envcommon/vpc.hcl\"\n}\n",
        );
        assert_eq!(
            tfmod(&live.join("acme/eu-west-1").join(s), &["lock"]).code,
            0
        );
    }
    let before = snapshot(&live);
    let p = tfmod(
        repo.path(),
        &[
            "pin",
            "vpc",
            "1.1.0",
            "--dir",
            "live/acme/eu-west-1/dev",
            "--bucket",
            &b,
        ],
    );
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(p.stderr.contains("_envcommon/vpc.hcl"), "{}", p.stderr);
    assert_eq!(snapshot(&live), before, "nothing written");
}

/// `pin` with the default `--dir .` at the repository's top would span every stage (it rewrote
/// dev and prod and wrote ./tfmod.lock): a --dir holding several stage locks, or a stage with a
/// nested lock, is refused and nothing is written.
#[tokio::test]
async fn pin_refuses_a_dir_spanning_several_stages() {
    let live = Live::new(false).await;
    let before = snapshot(live.repo.path());
    for dir in [".", "live", "live/prod/eu-west-1"] {
        let p = tfmod(
            live.repo.path(),
            &["pin", "vpc", "1.1.0", "--dir", dir, "--bucket", &live.b],
        );
        assert_eq!(p.code, 2, "{dir}: {}", p.stderr);
        assert!(p.stderr.contains("--dir"), "{}", p.stderr);
        assert_eq!(snapshot(live.repo.path()), before, "{dir}: nothing written");
    }
    // A lock nested inside a stage (verify would use it for the units below it).
    write(&live.stage("dev").join("vpc/tfmod.lock"), "# nested\n");
    let before = snapshot(live.repo.path());
    let p = tfmod(
        live.repo.path(),
        &[
            "pin",
            "vpc",
            "1.1.0",
            "--dir",
            "live/prod/eu-west-1/dev",
            "--bucket",
            &live.b,
        ],
    );
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(p.stderr.contains("vpc/tfmod.lock"), "{}", p.stderr);
    assert_eq!(snapshot(live.repo.path()), before, "nothing written");
}

/// A file reached through a symlink is not the stage's own: prod/common → ../dev/common made
/// promote rewrite dev's file. Paths are compared canonical, and a symlink on the way refuses.
#[tokio::test]
async fn promote_never_writes_through_a_symlink() {
    let live = Live::new(false).await;
    let dev_unit = live.read(&live.stage("dev").join("vpc/terragrunt.hcl"));
    let v1 = dev_unit
        .split("source = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let via_common = "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\ninclude \"c\" {\n  path = \"${get_terragrunt_dir()}/../common/vpc.hcl\"\n}\n";
    write(
        &live.stage("dev").join("common/vpc.hcl"),
        &format!("terraform {{\n  source = \"{v1}\"\n}}\n"),
    );
    write(&live.stage("dev").join("vpc/terragrunt.hcl"), via_common);
    std::os::unix::fs::symlink("../dev/common", live.stage("prod").join("common")).unwrap();
    write(&live.stage("prod").join("vpc/terragrunt.hcl"), via_common);
    let dev_before = snapshot(&live.stage("dev"));
    let prod_before = snapshot(&live.stage("prod"));
    let p = live.promote("1.1.0", "staging", "prod");
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(p.stderr.contains("symlink"), "{}", p.stderr);
    assert_eq!(snapshot(&live.stage("dev")), dev_before, "dev untouched");
    assert_eq!(snapshot(&live.stage("prod")), prod_before, "prod untouched");
}

/// promote keeps each target unit's `//subdir`: it must be a directory of the promoted version's
/// published files, or nothing is written.
#[tokio::test]
async fn promote_refuses_a_subdir_the_promoted_version_lacks() {
    let live = Live::new(false).await;
    let prod_unit = live.stage("prod").join("vpc/terragrunt.hcl");
    let text = live.read(&prod_unit);
    let with_subdir = text.replacen("1.0.0.zip", "1.0.0.zip//modules/nope", 1);
    assert_ne!(text, with_subdir);
    write(&prod_unit, &with_subdir);
    let before = snapshot(live.repo.path());
    let p = live.promote("1.1.0", "staging", "prod");
    assert_eq!(p.code, 1, "{}", p.stderr);
    assert!(
        p.stdout.contains("modules/nope") && p.stdout.contains("not a directory"),
        "{}",
        p.stdout
    );
    assert_eq!(snapshot(live.repo.path()), before, "nothing written");
}
