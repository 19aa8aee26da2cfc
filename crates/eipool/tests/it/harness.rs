//! The shared harness: one moto for the whole test process (each test gets its own pool name and
//! its own VPC, so tests don't see each other), one redis-server per test, the `eipool` binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use eipool_lab::claimer::{LabEnv, Outcome};
use eipool_lab::fixture::{Ec2Lab, Node};
use eipool_lab::services::{Moto, RedisServer};

static MOTO: OnceLock<Moto> = OnceLock::new();
static POOLS: AtomicUsize = AtomicUsize::new(0);

/// moto, started on first use and stopped when the test process exits.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| Moto::start().expect("start moto (run scripts/bootstrap first)"))
}

/// One test's world: a fresh pool name, its own Redis, a client on moto, and the binary.
pub struct Lab {
    pub ec2: Ec2Lab,
    pub env: LabEnv,
    pub pool: String,
    pub redis: RedisServer,
}

impl Lab {
    pub async fn new() -> Lab {
        let moto = moto();
        let pool = format!(
            "it{}-{}",
            std::process::id(),
            POOLS.fetch_add(1, Ordering::SeqCst)
        );
        Lab {
            ec2: Ec2Lab::new(&moto.endpoint),
            env: LabEnv::new(
                std::path::Path::new(env!("CARGO_BIN_EXE_eipool")),
                &moto.endpoint,
            ),
            pool,
            redis: RedisServer::start().expect("start redis-server (run scripts/bootstrap first)"),
        }
    }

    /// `eipool --pool P --redis-url R --network-interface-id ENI claim EXTRA…`
    pub fn claim_args(&self, node: &Node, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--pool".into(),
            self.pool.clone(),
            "--redis-url".into(),
            self.redis.url(),
            "--network-interface-id".into(),
            node.eni.clone(),
            "claim".into(),
        ];
        if !extra.contains(&"--timeout") {
            // Generous: a herd on a loaded 2-core machine is slow, and the deadline is not under test.
            args.extend(["--timeout".into(), "120s".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub async fn claim(&self, node: &Node, extra: &[&str]) -> Outcome {
        self.env.run(&self.claim_args(node, extra)).await
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
