//! A version number is used once, forever: a version with any S3 history is refused.

use crate::harness::{self, bucket, tfmod};

fn publish(dir: &std::path::Path, b: &str) -> crate::harness::Run {
    tfmod(
        dir,
        &[
            "publish",
            "m",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            b,
        ],
    )
}

#[tokio::test]
async fn a_version_deleted_from_a_versioned_bucket_is_never_published_again() {
    let b = bucket(true).await;
    let work = tempfile::tempdir().unwrap();
    harness::module(&work.path().join("m"), "first");
    assert_eq!(publish(work.path(), &b).code, 0);
    for key in ["vpc/1.0.0.zip", "vpc/1.0.0.json"] {
        harness::s3()
            .delete_object()
            .bucket(&b)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    harness::module(&work.path().join("m"), "other bytes");
    for _ in 0..2 {
        let r = publish(work.path(), &b);
        assert_eq!(r.code, 4, "{}", r.stderr);
        assert!(r.stderr.contains("used once"), "{}", r.stderr);
        assert!(r.stderr.contains("delete marker"), "{}", r.stderr);
    }
    assert!(harness::object(&b, "vpc/1.0.0.zip").await.is_none());
}

#[tokio::test]
async fn tfmod_delete_leaves_a_tombstone_and_the_version_stays_used() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    harness::module(&work.path().join("m"), "first");
    let first = publish(work.path(), &b);
    assert_eq!(first.code, 0);
    assert!(
        first.stderr.contains("not versioned"),
        "warns: {}",
        first.stderr
    );
    let d = tfmod(work.path(), &["delete", "vpc@1.0.0", "--bucket", &b]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(harness::object(&b, "vpc/1.0.0.zip").await.is_none());
    assert!(harness::object(&b, "vpc/1.0.0.deleted").await.is_some());
    for marker in ["first", "other bytes"] {
        harness::module(&work.path().join("m"), marker);
        let r = publish(work.path(), &b);
        assert_eq!(r.code, 4, "{}", r.stderr);
        assert!(r.stderr.contains("deleted"), "{}", r.stderr);
    }
    let show = tfmod(work.path(), &["show", "vpc@1.0.0", "--bucket", &b]);
    assert_eq!(show.code, 5, "{}", show.stderr);
}
