//! The Redis setups production users run, as real servers on loopback: a Redis Cluster with
//! replicas (`redis-cli --cluster create`), TLS with a private CA and client certificates
//! (made by `openssl`), and ACL users.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::servers::{find_tool, Guarded, RedisServer};

/// A CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by it, and
/// an unrelated CA that signed neither: PEM files in a temporary directory.
#[derive(Debug)]
pub struct Certs {
    _dir: tempfile::TempDir,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server's certificate (SAN IP:127.0.0.1, DNS:localhost) and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate signed by `ca`, and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (apt install openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A new EC P-256 private key at `dir/out`.
fn ec_key(dir: &Path, out: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            out,
        ],
    )
}

impl Certs {
    /// Make them with the `openssl` command line (EC P-256 keys, valid one day).
    pub fn generate() -> Result<Certs> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        for ca in ["ca", "other-ca"] {
            ec_key(d, &format!("{ca}.key"))?;
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &format!("{ca}.key"),
                    "-days",
                    "1",
                    "-subj",
                    &format!("/CN=eipool lab {ca}"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            )?;
        }
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext)?;
            ec_key(d, &format!("{name}.key.sec1"))?;
            // PKCS#8, which every TLS stack reads.
            openssl(
                d,
                &[
                    "pkcs8",
                    "-topk8",
                    "-nocrypt",
                    "-in",
                    &format!("{name}.key.sec1"),
                    "-out",
                    &format!("{name}.key"),
                ],
            )?;
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN=eipool lab {name}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            )?;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            )?;
        }
        Ok(Certs {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            other_ca: d.join("other-ca.pem"),
            _dir: dir,
        })
    }

    /// redis-server arguments for TLS with these certificates; `require_client_cert`: mutual TLS.
    pub fn server_args(&self, require_client_cert: bool) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert-file".into(),
            p(&self.server_cert),
            "--tls-key-file".into(),
            p(&self.server_key),
            "--tls-ca-cert-file".into(),
            p(&self.ca),
            "--tls-auth-clients".into(),
            if require_client_cert { "yes" } else { "no" }.into(),
        ]
    }
}

/// A redis-server with TLS on its port, using `certs`.
pub fn tls_server(certs: &Certs, require_client_cert: bool) -> Result<RedisServer> {
    RedisServer::start_with(&certs.server_args(require_client_cert), true)
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn cluster_port() -> Result<u16> {
    crate::servers::free_ports(&[0, 10_000])
}

/// One node of a [`RedisCluster`].
#[derive(Debug)]
pub struct ClusterNode {
    /// Its port.
    pub port: u16,
    proc: Option<Guarded>,
}

/// A Redis Cluster on loopback: `primaries` primaries with `replicas` replicas each, a short
/// node timeout (1 s) so that a replica takes over quickly when its primary dies.
#[derive(Debug)]
pub struct RedisCluster {
    _dir: tempfile::TempDir,
    /// Every node, in creation order.
    pub nodes: Vec<ClusterNode>,
}

fn sync_conn(port: u16) -> Result<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    Ok(c.get_connection_with_timeout(Duration::from_secs(2))?)
}

impl RedisCluster {
    /// Start the nodes, create the cluster, and wait until every node says it is ok.
    pub fn start(primaries: usize, replicas: usize) -> Result<RedisCluster> {
        let bin = find_tool("EIPOOL_REDIS_SERVER", "redis-server")?;
        let cli = find_tool("EIPOOL_REDIS_CLI", "redis-cli")?;
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let port = cluster_port()?;
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "1000",
                // A replica of an idle primary may last have heard from it 10 s ago (the
                // replication ping period): let it take over anyway.
                "--cluster-replica-validity-factor",
                "0",
                "--dir",
                &dir.path().display().to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut proc = Guarded::spawn("redis-cluster", &bin, &args)?;
            proc.wait_for_port(port, Duration::from_secs(20))?;
            nodes.push(ClusterNode {
                port,
                proc: Some(proc),
            });
        }
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = RedisCluster { _dir: dir, nodes };
        cluster.wait_until_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The URL of one node, as users give the configuration endpoint.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }

    /// The ports of the live nodes.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Wait until every live node reports `cluster_state:ok` and the same primaries cover every slot.
    pub fn wait_until_ok(&self, within: Duration) -> Result<()> {
        let until = Instant::now() + within;
        loop {
            let states: Vec<Result<String>> = self
                .live_ports()
                .into_iter()
                .map(|p| -> Result<String> {
                    Ok(redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut sync_conn(p)?)?)
                })
                .collect();
            if states
                .iter()
                .all(|s| s.as_ref().is_ok_and(|s| s.contains("cluster_state:ok")))
            {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("the cluster is not ok after {within:?}: {states:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the primary serving `key`'s slot, as the live nodes see it now.
    pub fn primary_of(&self, key: &str) -> Result<u16> {
        let port = *self.live_ports().first().context("no live node")?;
        let mut c = sync_conn(port)?;
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)?;
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
        // Each range: [start, end, [host, port, id], replica…].
        for range in raw {
            let redis::Value::Array(v) = range else {
                continue;
            };
            let (
                Some(redis::Value::Int(lo)),
                Some(redis::Value::Int(hi)),
                Some(redis::Value::Array(node)),
            ) = (v.first(), v.get(1), v.get(2))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&slot) {
                if let Some(redis::Value::Int(port)) = node.get(1) {
                    return Ok(*port as u16);
                }
            }
        }
        bail!("no primary serves slot {slot}")
    }

    /// Whether the node on `port` is a primary now (ROLE).
    pub fn is_primary(&self, port: u16) -> Result<bool> {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut sync_conn(port)?)?;
        Ok(matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"))
    }

    /// A pool name whose keys (`eipool:{<name>}:…`) land on the primary at `port`.
    pub fn pool_served_by(&self, port: u16, prefix: &str) -> Result<String> {
        for i in 0..10_000 {
            let name = format!("{prefix}-{i}");
            if self.primary_of(&format!("eipool:{{{name}}}:fence"))? == port {
                return Ok(name);
            }
        }
        bail!("no pool name of the form {prefix}-N lands on port {port}")
    }

    /// Kill the node on `port` (SIGTERM, then SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            if let Some(mut p) = n.proc.take() {
                p.stop();
            }
        }
    }

    /// The primaries' ports now.
    pub fn primaries(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|p| self.is_primary(*p).unwrap_or(false))
            .collect()
    }

    /// What `GET key` answers on the node at `port` itself (no redirection): the key's value when
    /// that node holds the key's slot, else the MOVED error text.
    pub fn get_on(
        &self,
        port: u16,
        key: &str,
    ) -> Result<std::result::Result<Option<String>, String>> {
        let mut c = sync_conn(port)?;
        Ok(redis::cmd("GET")
            .arg(key)
            .query::<Option<String>>(&mut c)
            .map_err(|e| e.to_string()))
    }

    /// `HLEN key` on the node at `port` itself.
    pub fn hlen_on(&self, port: u16, key: &str) -> Result<i64> {
        let mut c = sync_conn(port)?;
        Ok(redis::cmd("HLEN").arg(key).query(&mut c)?)
    }
}

/// Run one command on a plain (non-cluster, non-TLS) Redis, for test setup (ACL SETUSER, …).
pub fn command(url: &str, args: &[&str]) -> Result<redis::Value> {
    let c = redis::Client::open(url)?;
    let mut conn = c.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    Ok(cmd.query(&mut conn)?)
}
