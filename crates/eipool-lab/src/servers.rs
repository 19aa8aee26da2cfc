//! Real servers as child processes: moto's EC2 emulator and redis-server, on free loopback ports.
//!
//! Each child runs under a tiny `sh` guard that kills it when our end of its stdin closes: on
//! `Drop`, and also when the test process dies without running destructors (a panic in a static,
//! SIGKILL), because the kernel closes the pipe then too.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    // Never the same port twice in one process: a port is free only until its user binds it,
    // and two servers started close together (a herd of agents) could be handed the same one,
    // the second then answering for the first.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = l.local_addr()?.port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(&port) {
            seen.push(port);
            return Ok(port);
        }
    }
}

/// The workspace root (where `.venv/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A child process that dies with us.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Guarded {
    /// Start `program args` under the guard, logging to a temp file.
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> Result<Guarded> {
        let log = std::env::temp_dir().join(format!(
            "eipool-lab-{name}-{}-{}.log",
            std::process::id(),
            free_port()?
        ));
        let logf = std::fs::File::create(&log)?;
        let mut child = Command::new("sh")
            .arg("-c")
            // The child gets /dev/null as stdin (background job); the guard waits on ours.
            .arg(r#""$@" & child=$!; read -r _; kill -TERM "$child" 2>/dev/null; sleep 0.2; kill -KILL "$child" 2>/dev/null; wait "$child""#)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let stdin = child.stdin.take();
        Ok(Guarded {
            name: name.to_string(),
            child,
            stdin,
            log,
        })
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Ok(f) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stop the child and wait for it.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }

    /// Wait until `port` accepts connections, or fail with the child's log.
    pub fn wait_for_port(&mut self, port: u16, within: Duration) -> Result<()> {
        let until = Instant::now() + within;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > until {
                bail!(
                    "{} did not listen on port {port} within {within:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Find a tool: `$ENV_VAR`, then the project's `.venv/bin`, then `PATH`.
pub(crate) fn find_tool(env_var: &str, name: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.exists() {
        return Ok(venv);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found: run scripts/bootstrap (installs it), or set {env_var} to its path")
}

/// moto's EC2 emulator as a real HTTP server.
#[derive(Debug)]
pub struct Moto {
    /// The `http://127.0.0.1:PORT` endpoint.
    pub endpoint: String,
    /// Its port.
    pub port: u16,
    _proc: Guarded,
}

impl Moto {
    /// Start `moto_server` on a free loopback port and wait until it answers.
    pub fn start() -> Result<Moto> {
        let bin = find_tool("EIPOOL_MOTO_SERVER", "moto_server")?;
        let port = free_port()?;
        let mut proc = Guarded::spawn(
            "moto",
            &bin,
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
        )?;
        proc.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            _proc: proc,
        })
    }
}

/// A redis-server on a free loopback port, without persistence.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    /// Extra arguments (TLS, a password, `--replicaof`, …).
    extra: Vec<String>,
    /// Whether the port speaks TLS (`rediss://`).
    tls: bool,
    proc: Option<Guarded>,
}

impl RedisServer {
    /// Start redis-server and wait until it accepts connections.
    pub fn start() -> Result<RedisServer> {
        Self::start_with(&[], false)
    }

    /// Start redis-server with `extra` arguments; `tls`: its port speaks TLS (the arguments
    /// give `--tls-cert-file` and friends; the port is passed as `--tls-port`, `--port 0`).
    pub fn start_with(extra: &[String], tls: bool) -> Result<RedisServer> {
        let bin = find_tool("EIPOOL_REDIS_SERVER", "redis-server")?;
        let mut r = RedisServer {
            port: free_port()?,
            bin,
            extra: extra.to_vec(),
            tls,
            proc: None,
        };
        r.launch()?;
        Ok(r)
    }

    fn launch(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let listen: &[&str] = if self.tls {
            &["--port", "0", "--tls-port", &port]
        } else {
            &["--port", &port]
        };
        let mut args: Vec<String> = listen
            .iter()
            .chain(&[
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ])
            .map(|s| s.to_string())
            .collect();
        // A replica's full sync writes a snapshot even without --save: keep it out of the
        // working tree.
        args.extend([
            "--dir".to_string(),
            std::env::temp_dir().display().to_string(),
            "--dbfilename".to_string(),
            format!("eipool-lab-redis-{port}.rdb"),
        ]);
        args.extend(self.extra.iter().cloned());
        let mut proc = Guarded::spawn("redis", &self.bin, &args)?;
        proc.wait_for_port(self.port, Duration::from_secs(20))?;
        self.proc = Some(proc);
        Ok(())
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` when it speaks TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stop it (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Stop it and start it again, empty, on the same port.
    pub fn restart_empty(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }
}

/// A plain HTTP/1.1 GET on loopback: (status code, body). Enough for `/readyz` and `/metrics`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
