//! A TCP proxy for Redis faults: pass traffic through, slow it down, black-hole it (accept and
//! read, never answer), or cut every connection. The mode can change at any moment.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward everything, each chunk after this delay.
    Slow(Duration),
    /// Accept and read, never forward nor answer.
    BlackHole,
    /// Close every connection, and each new one at once.
    Cut,
}

/// A running proxy; stops when dropped.
pub struct TcpFault {
    /// Where clients connect: `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    stop: CancellationToken,
}

impl TcpFault {
    /// Proxy a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<TcpFault> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => match r { Ok((c, _)) => c, Err(_) => continue },
                };
                let rx = rx.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    if *rx.borrow() == Mode::Cut {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = st.cancelled() => {}
                        _ = pipe(cr, sw, rx.clone()) => {}
                        _ = pipe(sr, cw, rx.clone()) => {}
                    }
                });
            }
        });
        Ok(TcpFault { addr, mode, stop })
    }

    /// `redis://ADDR`, for a Redis behind this proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switch mode for every connection, now and later.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for TcpFault {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Copy one direction, obeying the mode; returns when either side closes or the mode is `Cut`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = wait_for_cut(&mut mode) => return,
        };
        let current = *mode.borrow();
        match current {
            Mode::Cut => return,
            Mode::BlackHole => continue,
            Mode::Slow(d) => tokio::time::sleep(d).await,
            Mode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn wait_for_cut(mode: &mut watch::Receiver<Mode>) {
    while *mode.borrow_and_update() != Mode::Cut {
        if mode.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
