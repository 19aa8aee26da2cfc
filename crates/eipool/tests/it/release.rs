//! Giving back, as operators and preStop hooks run it: `release` by the interface, by association
//! id and by the env file (exported or not), never touching a newer claim; and the env file
//! `claim --output` writes, only ever a regular file.

use std::os::unix::fs::FileTypeExt;

use eipool_lab::claimer::ClaimReport;

use crate::harness::{json, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_then_claim_again_and_release_twice_is_fine() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(2).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let first = lab.claim(&nodes[0], &[]).await.report().expect("claim");

    let a = lab.release_args(&nodes[0], &["--association-id", &first.association_id]);
    let r = json(&lab.run(&a).await);
    assert_eq!(
        r["released"][0]["allocation_id"],
        first.allocation_id.as_str(),
        "{r}"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state[&first.allocation_id].association_id.is_none(),
        "still associated: {state:?}"
    );

    // Twice is fine: nothing held, exit 0, nothing released.
    let r = json(&lab.run(&a).await);
    assert_eq!(r["released"].as_array().map(Vec::len), Some(0), "{r}");

    // The freed address is claimable at once (Redis forgot it was assigned), by anyone.
    let second: ClaimReport = lab
        .claim(&nodes[1], &[])
        .await
        .report()
        .expect("claim after release");
    assert_eq!(second.allocation_id, first.allocation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_leaves_a_newer_association_alone() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let held = lab.claim(&nodes[0], &[]).await.report().expect("claim");
    let a = lab.release_args(
        &nodes[0],
        &["--association-id", "eipassoc-0123456789abcdef0"],
    );
    let o = lab.run(&a).await;
    let r = json(&o);
    assert_eq!(r["released"].as_array().map(Vec::len), Some(0), "{r}");
    // It says why, once: held under another association id, not "nothing held".
    assert!(
        o.stderr.contains("another association id")
            && !o.stderr.contains("nothing of the pool is held"),
        "{o}"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert_eq!(
        state[&held.allocation_id].association_id.as_deref(),
        Some(held.association_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reads_the_association_from_the_env_file() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("eipool.env");
    let held = lab
        .claim(&nodes[0], &["--output", env_file.to_str().unwrap()])
        .await
        .report()
        .expect("claim");
    let a = lab.release_args(&nodes[0], &["--env-file", env_file.to_str().unwrap()]);
    let r = json(&lab.run(&a).await);
    assert_eq!(
        r["released"][0]["association_id"],
        held.association_id.as_str(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reads_an_exported_env_file_and_refuses_a_missing_one() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("eipool.env");
    lab.claim(&nodes[0], &["--output", env_file.to_str().unwrap()])
        .await
        .report()
        .expect("claim");

    // A missing file: an error, nothing released.
    let o = lab
        .release(&nodes[0], &["--env-file", "/nonexistent/eipool.env"])
        .await;
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.error_line().contains("--env-file") && o.error_line().contains("Nothing is released"),
        "{o}"
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_some()),
        "released anyway: {state:?}"
    );

    // The file's variables exported (as docker --env-file or systemd EnvironmentFile= do).
    let mut cmd =
        lab.env
            .command(&lab.with_redis(&["release", "--env-file", env_file.to_str().unwrap()]));
    for line in std::fs::read_to_string(&env_file).unwrap().lines() {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "not released: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_refuses_symlinks_devices_and_fifos_before_claiming() {
    let lab = Lab::new().await;
    let nodes = lab.ec2.nodes(1).await.unwrap();
    lab.ec2.allocate(Some(&lab.pool), 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("env-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("env-fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, kind) in [
        (link.to_str().unwrap(), "a symlink"),
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/null", "a device"),
    ] {
        let o = lab.claim(&nodes[0], &["--output", path]).await;
        assert_eq!(o.code, Some(2), "{o}");
        assert!(
            o.error_line().contains("--output") && o.error_line().contains(kind),
            "{o}"
        );
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    let state = lab.ec2.pool_state(&lab.pool).await.unwrap();
    assert!(
        state.values().all(|e| e.association_id.is_none()),
        "claimed anyway: {state:?}"
    );
}
