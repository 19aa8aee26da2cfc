//! A server that misbehaves on purpose, on a loopback port: it plays Redis, IMDS or EC2 for a
//! claimer and answers garbage, a header promising a gigabyte, a truncated body, nothing at all,
//! or one byte at a time (slow-loris). Stops when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How it answers each connection: after reading what the client sent first, `answer` (all at
/// once, or a byte every `drip`), then the connection is held open (`hold`) or closed.
#[derive(Debug, Clone)]
pub struct Misbehaviour {
    /// What the scenario is called in the test's table.
    pub name: &'static str,
    pub answer: Vec<u8>,
    pub drip: Option<Duration>,
    pub hold: bool,
}

impl Misbehaviour {
    /// `answer`, then close.
    pub fn answer(name: &'static str, answer: impl Into<Vec<u8>>) -> Misbehaviour {
        Misbehaviour {
            name,
            answer: answer.into(),
            drip: None,
            hold: false,
        }
    }

    /// `answer`, then hold the connection open, saying nothing more.
    pub fn answer_then_hold(name: &'static str, answer: impl Into<Vec<u8>>) -> Misbehaviour {
        Misbehaviour {
            hold: true,
            ..Misbehaviour::answer(name, answer)
        }
    }

    /// Read, then say nothing.
    pub fn silent() -> Misbehaviour {
        Misbehaviour::answer_then_hold("silent", Vec::new())
    }

    /// `answer` a byte every 500 ms, and hold.
    pub fn slow_loris(answer: impl Into<Vec<u8>>) -> Misbehaviour {
        Misbehaviour {
            drip: Some(Duration::from_millis(500)),
            ..Misbehaviour::answer_then_hold("slow-loris", answer)
        }
    }
}

/// A running hostile server.
pub struct Hostile {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hostile {
    /// Listen on a free loopback port and misbehave on every connection.
    pub async fn start(how: Misbehaviour) -> Result<Hostile> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            loop {
                let mut conn = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => match r { Ok((c, _)) => c, Err(_) => continue },
                };
                let (how, st) = (how.clone(), st.clone());
                tokio::spawn(async move {
                    let serve = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        // What the client says first (a command, a request); bounded.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await;
                        match how.drip {
                            None => conn.write_all(&how.answer).await?,
                            Some(every) => {
                                for b in &how.answer {
                                    conn.write_all(std::slice::from_ref(b)).await?;
                                    tokio::time::sleep(every).await;
                                }
                            }
                        }
                        if how.hold {
                            // Drain whatever else comes, answering nothing.
                            while conn.read(&mut buf).await? > 0 {}
                        }
                        anyhow::Ok(())
                    };
                    tokio::select! {
                        _ = st.cancelled() => {}
                        _ = serve => {}
                    }
                });
            }
        });
        Ok(Hostile { addr, stop })
    }

    /// `scheme://127.0.0.1:PORT`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }
}
