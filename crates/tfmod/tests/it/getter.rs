//! The download side: go-getter itself (Debian's 1.4.1, built here from tests/getter/main.go the
//! way Terraform's module installer calls it) fetches tfmod's sources from moto's S3, accepts the
//! published bytes and refuses replaced ones because of the source's `?checksum=`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::{self, bucket, replace};

/// The getter binary, built once per test process, offline, from Debian's go-getter package.
fn getter() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let go = which("go").unwrap_or_else(|| {
            panic!("go not found: run scripts/bootstrap (installs golang-go and golang-github-hashicorp-go-getter-dev)")
        });
        let gopath = Path::new("/usr/share/gocode");
        assert!(
            gopath.join("src/github.com/hashicorp/go-getter/get_s3.go").is_file(),
            "go-getter's source not in {}: run scripts/bootstrap",
            gopath.display()
        );
        let out = std::env::temp_dir().join(format!("tfmod-getter-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/getter/main.go");
        let status = Command::new(go)
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .status()
            .expect("run go build");
        assert!(status.success(), "go build {}", src.display());
        out
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs the getter like `terraform init` would, with moto's dummy credentials.
fn fetch(source: &str, dst: &Path) -> (bool, String) {
    let out = Command::new(getter())
        .arg(source)
        .arg(dst)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run the getter");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("getter {source} → {}\n{err}", out.status);
    (out.status.success(), err)
}

/// A well-formed module archive with other contents (published elsewhere by tfmod itself).
async fn backdoor() -> &'static [u8] {
    let elsewhere = bucket(false).await;
    let dir = tempfile::tempdir().unwrap();
    harness::publish(dir.path(), &elsewhere, "vpc", "1.0.0", "a backdoor");
    let bytes = harness::object(&elsewhere, "vpc/1.0.0.zip").await.unwrap();
    Box::leak(bytes.into_boxed_slice())
}

#[tokio::test]
async fn go_getter_fetches_the_published_bytes_and_refuses_replaced_ones() {
    let b = bucket(false).await;
    let repo = tempfile::tempdir().unwrap();
    let source = harness::publish(repo.path(), &b, "vpc", "1.0.0", "the published module");
    assert!(source.contains("?checksum=sha256:") || source.contains("&checksum=sha256:"));

    let dst = repo.path().join("init-1");
    let (ok, err) = fetch(&source, &dst);
    assert!(ok, "{err}");
    let main = std::fs::read_to_string(dst.join("main.tf")).unwrap();
    assert!(main.contains("the published module"), "{main}");

    // Someone replaces the archive (unversioned bucket): init refuses it on its own.
    replace(&b, "vpc/1.0.0.zip", backdoor().await).await;
    let dst = repo.path().join("init-2");
    let (ok, err) = fetch(&source, &dst);
    assert!(!ok, "the replaced bytes were accepted");
    assert!(err.contains("Checksums did not match"), "{err}");
    assert!(!dst.join("main.tf").exists());
}

#[tokio::test]
async fn on_a_versioned_bucket_go_getter_fetches_the_pinned_version() {
    let b = bucket(true).await;
    let repo = tempfile::tempdir().unwrap();
    let source = harness::publish(repo.path(), &b, "vpc", "1.0.0", "the published module");
    assert!(source.contains("version="), "{source}");
    replace(&b, "vpc/1.0.0.zip", backdoor().await).await;

    // The pinned version is still what init gets.
    let dst = repo.path().join("init");
    let (ok, err) = fetch(&source, &dst);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(dst.join("main.tf"))
        .unwrap()
        .contains("the published module"));
    // Without ?version= the replacement is fetched, and the checksum refuses it.
    let (base, query) = source.split_once('?').unwrap();
    let query: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("version="))
        .collect();
    let unpinned = format!("{base}?{}", query.join("&"));
    let (ok, err) = fetch(&unpinned, &repo.path().join("init-unpinned"));
    assert!(
        !ok && err.contains("Checksums did not match"),
        "{unpinned}: {err}"
    );
}
