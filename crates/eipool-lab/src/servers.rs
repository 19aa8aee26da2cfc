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

/// A loopback port nothing listens on right now, handed out once across every process of this
/// user that asks here (the integration tests, the benchmark and the soak run side by side).
pub fn free_port() -> Result<u16> {
    free_ports(&[0])
}

/// A loopback port `p` such that `p + offset` is free and handed out for each of `offsets`
/// (a Redis Cluster node also listens on its bus port, `p + 10000`).
///
/// A port is free only until its user binds it; two things could take it in between. Another
/// process's pick: so each port is reserved by a lock on a file named for it, held until this
/// process exits (the kernel drops the lock then, even on SIGKILL). An outgoing connection, whose
/// local port the kernel takes from its ephemeral range (`ip_local_port_range`): so ports are
/// picked outside that range when there is room ([`pick_range`]).
pub fn free_ports(offsets: &[u16]) -> Result<u16> {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = reservations_dir()?;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let widest = offsets.iter().copied().max().unwrap_or(0);
    let Some(picks) = pick_range(ephemeral, widest) else {
        bail!("no room for loopback ports {offsets:?} apart above port 20000");
    };
    let reserve = |port: u16| -> Result<Option<std::fs::File>> {
        // The directory is this user's alone: no one else can have put a link there.
        let path = dir.join(port.to_string());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {} (a port's reservation)", path.display()))?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        // Reserved by no one else; free only if nothing is bound to it either.
        match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
            Err(e) => Err(e).with_context(|| format!("probing loopback port {port}")),
        }
    };
    for _ in 0..1000 {
        let p = rand::Rng::random_range(&mut rand::rng(), picks.clone());
        let mut locks = Vec::new();
        for offset in offsets {
            match reserve(p + offset)? {
                Some(f) => locks.push(f),
                None => break,
            }
        }
        if locks.len() == offsets.len() {
            HELD.lock().unwrap_or_else(|p| p.into_inner()).extend(locks);
            return Ok(p);
        }
    }
    bail!(
        "no free loopback port in {picks:?} (with {offsets:?} added) after 1000 tries: \
         {} holds a reservation per port in use",
        dir.display()
    )
}

/// This user's directory of port reservations, private to it (its own, mode 0700): another user
/// can neither hold its ports nor plant a link where it creates files.
fn reservations_dir() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // /proc/self belongs to the process's user.
    let uid = std::fs::metadata("/proc/self")
        .context("reading /proc/self (whose owner is this user)")?
        .uid();
    let dir = std::env::temp_dir().join(format!("eipool-lab-ports-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dir.display()))
        }
        _ => {}
    }
    let meta =
        std::fs::symlink_metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is not a directory of uid {uid} with mode 0700: remove it (the lab makes it again)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Where [`free_ports`] picks `p` from so that `p + widest` is a port too, given the kernel's
/// ephemeral range `(low, high)`: from 20000 up to the range (Linux's default is 32768–60999),
/// else above it; when neither has room, anywhere from 20000 (an outgoing connection may then
/// take a port before its user binds it, as with any pick of a free port).
fn pick_range((low, high): (u16, u16), widest: u16) -> Option<std::ops::RangeInclusive<u16>> {
    let room = |from: u32, to: u32| {
        let end = to.checked_sub(u32::from(widest))?;
        (end > from + 256).then(|| from as u16..=(end - 1) as u16)
    };
    room(20_000, u32::from(low))
        .or_else(|| room(u32::from(high) + 1, 65_536))
        .or_else(|| room(20_000, 65_536))
}

/// The last 20 lines of the log at `path` (empty when it cannot be read), for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
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
        static SPAWNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "eipool-lab-{name}-{}-{}.log",
            std::process::id(),
            SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
        log_tail(&self.log)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_reserved_against_every_other_open_of_its_lock() {
        let p = free_port().unwrap();
        let q = free_ports(&[0, 10_000]).unwrap();
        assert_ne!(p, q);
        // flock(2) conflicts between open file descriptions, in this process as in another:
        // what another process's pick would try.
        let dir = reservations_dir().unwrap();
        for port in [p, q, q + 10_000] {
            let f = std::fs::File::open(dir.join(port.to_string())).unwrap();
            assert_eq!(
                rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive),
                Err(rustix::io::Errno::WOULDBLOCK),
                "port {port} is not reserved"
            );
        }
        // And nothing else is bound there: a server can take it.
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p)).unwrap();
    }

    #[test]
    fn the_reservations_are_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = reservations_dir().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }

    #[test]
    fn ports_are_picked_outside_the_ephemeral_range_when_there_is_room() {
        // Linux's default: below it, with room for a cluster's bus port below it too.
        assert_eq!(pick_range((32768, 60999), 0), Some(20_000..=32_767));
        assert_eq!(pick_range((32768, 60999), 10_000), Some(20_000..=22_767));
        // No room below for a bus port 10000 up, nor above: anywhere from 20000.
        assert_eq!(pick_range((28_000, 60_999), 10_000), Some(20_000..=55_535));
        // Starting low: above it.
        assert_eq!(pick_range((1024, 50_000), 0), Some(50_001..=65_535));
        // The whole range ephemeral: anywhere from 20000, p + widest still a port.
        assert_eq!(pick_range((1024, 65_535), 10_000), Some(20_000..=55_535));
        assert_eq!(pick_range((1024, 65_535), 50_000), None);
    }
}
