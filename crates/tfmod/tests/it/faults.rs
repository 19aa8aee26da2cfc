//! S3 faults: short errors that name the bucket, the region S3 reports, the key and the fix; a
//! bounded timeout; the documented exit codes.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::harness::{self, bucket, tfmod, tfmod_env};

/// A loopback server that answers every request with `status` and `headers` (S3's error shape:
/// no body for HEAD, an XML error otherwise). With `status` 0 it accepts and never answers.
fn faulty_s3(status: u16, headers: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if status == 0 {
                    // Hung: hold the connection, say nothing.
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    return;
                }
                let body = if head.starts_with(b"HEAD") {
                    String::new()
                } else {
                    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>E{status}</Code><Message>{}</Message><RequestId>1</RequestId></Error>", "x".repeat(400))
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Fault\r\n{headers}Content-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    if head.starts_with(b"HEAD") { 0 } else { body.len() },
                    body
                );
            });
        }
    });
    format!("http://{addr}")
}

fn publish_at(endpoint: &str, extra: &[(&str, &str)]) -> crate::harness::Run {
    let work = tempfile::tempdir().unwrap();
    harness::module(work.path(), "x");
    tfmod_env(
        work.path(),
        endpoint,
        extra,
        &[
            "publish",
            ".",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            "acme-mods",
        ],
    )
}

#[test]
fn s3_refusals_are_one_short_line_naming_bucket_key_region_and_fix() {
    for (status, headers, says) in [
        (
            301,
            "x-amz-bucket-region: eu-west-1\r\n",
            vec!["eu-west-1", "AWS_REGION"],
        ),
        (403, "", vec!["403", "s3:"]),
        (500, "", vec!["500", "retry"]),
    ] {
        let r = publish_at(&faulty_s3(status, headers), &[]);
        assert_eq!(r.code, 3, "{status}: {}", r.stderr);
        let line = r.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{status}: one line: {line}");
        assert!(line.len() < 300, "{status}: short ({}): {line}", line.len());
        for w in says.iter().chain(&["acme-mods", "vpc/1.0.0.zip"]) {
            assert!(line.contains(w), "{status}: {w} in {line}");
        }
    }
}

#[test]
fn a_hung_s3_fails_within_the_configured_timeout() {
    let endpoint = faulty_s3(0, "");
    let r = publish_at(&endpoint, &[("TFMOD_S3_TIMEOUT", "1s")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("TFMOD_S3_TIMEOUT"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

#[tokio::test]
async fn a_missing_bucket_is_exit_3_as_documented() {
    let work = tempfile::tempdir().unwrap();
    harness::module(work.path(), "x");
    // (The module's .terraform would be a problem for pin's scan: pin an empty stage.)
    std::fs::create_dir(work.path().join("stage")).unwrap();
    for args in [
        vec!["show", "vpc@1.0.0", "--bucket", "tfmod-no-such-bucket"],
        vec!["versions", "vpc", "--bucket", "tfmod-no-such-bucket"],
        vec![
            "pin",
            "vpc",
            "1.0.0",
            "--dir",
            "stage",
            "--bucket",
            "tfmod-no-such-bucket",
        ],
        vec![
            "publish",
            ".",
            "--name",
            "vpc",
            "--version",
            "1.0.0",
            "--bucket",
            "tfmod-no-such-bucket",
        ],
    ] {
        let r = tfmod(work.path(), &args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("tfmod-no-such-bucket"), "{}", r.stderr);
    }
}

#[tokio::test]
async fn corrupt_metadata_is_damage_not_an_unavailable_s3() {
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    harness::publish(work.path(), &b, "vpc", "1.0.0", "x");
    harness::replace(&b, "vpc/1.0.0.json", b"{ not json").await;
    let r = tfmod(work.path(), &["show", "vpc@1.0.0", "--bucket", &b]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(!r.stderr.contains("unavailable"), "{}", r.stderr);
    assert!(r.stderr.contains("vpc/1.0.0.json"), "{}", r.stderr);
}

/// Peak memory of publishing (GNU time's %M: that one process's peak RSS) does not grow with
/// the archive: the archive is streamed, never held. A 1 MiB and a 48 MiB archive compared.
#[tokio::test]
async fn publishing_streams_the_archive() {
    const MIB: usize = 1024 * 1024;
    let b = bucket(false).await;
    let work = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for (version, mib) in [("1.0.0", 1), ("2.0.0", 48)] {
        let m = work.path().join(version);
        harness::module(&m, version);
        std::fs::create_dir_all(m.join("files")).unwrap();
        // Incompressible, and stored anyway: the archive is as large as the file.
        let mut f = std::fs::File::create(m.join("files/blob.bin")).unwrap();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut chunk = vec![0u8; MIB];
        for _ in 0..mib {
            for w in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&chunk).unwrap();
        }
        drop(f);
        let tfmod_bin = env!("CARGO_BIN_EXE_tfmod");
        let args = [
            "-f",
            "peak-kib %M",
            tfmod_bin,
            "publish",
            version,
            "--name",
            "big",
            "--version",
            version,
            "--bucket",
            &b,
        ];
        // tfmod's environment as the harness gives it, under GNU time.
        let env = harness::command(work.path(), &harness::moto().endpoint, &[]);
        let mut time = std::process::Command::new("/usr/bin/time");
        time.args(args).current_dir(work.path());
        for (k, v) in env.get_envs() {
            match v {
                Some(v) => time.env(k, v),
                None => time.env_remove(k),
            };
        }
        let out = time
            .output()
            .expect("/usr/bin/time (GNU time) runs: run scripts/bootstrap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let peak: u64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak-kib "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak in {stderr}"));
        println!("publish of a {mib} MiB archive: peak RSS {} KiB", peak);
        peaks.push(peak);
    }
    let growth = peaks[1].saturating_sub(peaks[0]);
    assert!(
        growth < 8 * 1024,
        "peak RSS grew by {growth} KiB for 47 MiB more archive ({peaks:?} KiB)"
    );
}
