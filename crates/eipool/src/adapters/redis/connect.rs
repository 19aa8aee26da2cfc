//! Reaching Redis: one `--redis-url` for a single node or a cluster (asked on first use, so an
//! ElastiCache configuration endpoint works as given), over TLS when the target says so.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use super::failures::{says_single_node, sort, with_scheme_hint, Topology};
use super::target::RedisTarget;
use super::RedisError;

/// A connection to one node (reconnecting) or to a cluster (following its slots).
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) fn topology(&self) -> Topology {
        match self {
            Conn::Single(_) => Topology::Single,
            Conn::Cluster(_) => Topology::Cluster,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connect, ask the server whether it is a cluster, and return the matching connection.
/// Credentials are checked here (the first round trip), so refused ones surface at once.
pub(super) async fn connect(target: &RedisTarget, timeout: Duration) -> Result<Conn, RedisError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut probe = target
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| with_scheme_hint(sort(&e, Topology::Single), target, &e))?;
    let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut probe)
        .await;
    let cluster = match info {
        Ok(_) => true,
        // The server's own answer: "cluster support disabled", an unknown or forbidden CLUSTER
        // command: one node. (A cluster whose user may not run CLUSTER INFO answers MOVED
        // later, which says so.)
        Err(e) if says_single_node(&e) => false,
        // Anything else (refused credentials, a timeout, a dropped connection) decides nothing:
        // the answer is not remembered, and the next call asks again.
        Err(e) => return Err(sort(&e, Topology::Single)),
    };
    if !cluster {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(target.client.clone(), config)
            .map_err(|e| sort(&e, Topology::Single))?;
        return Ok(Conn::Single(manager));
    }
    let mut builder = ClusterClientBuilder::new(vec![target.client.get_connection_info().clone()])
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(20)
        .max_retry_wait(timeout.as_millis() as u64 / 2);
    if let Some(certs) = &target.certs {
        builder = builder.certs(certs.clone());
    }
    let client = builder.build().map_err(|e| sort(&e, Topology::Cluster))?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(|e| sort(&e, Topology::Cluster))?;
    Ok(Conn::Cluster(conn))
}

/// The role (`master`, `slave`) of the node a fresh connection lands on.
pub(super) async fn role(target: &RedisTarget) -> Result<String, RedisError> {
    let mut c = target
        .client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| sort(&e, Topology::Single))?;
    let answer: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut c)
        .await
        .map_err(|e| sort(&e, Topology::Single))?;
    match answer.first() {
        Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
        _ => Err(RedisError::Unavailable("ROLE gave no role".into())),
    }
}
