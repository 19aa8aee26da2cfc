//! The Redis side of the claim protocol, through the library against a real redis-server.

use std::net::Ipv4Addr;
use std::time::Duration;

use eipool::model::{Address, AllocationId, Association, AssociationId, EniId};
use eipool::redis::SharedListing;
use eipool_lab::servers::RedisServer;

use crate::harness::{eventually, redis_as, redis_conn};

fn listing() -> Vec<Address> {
    vec![
        Address {
            allocation_id: "eipalloc-1".parse::<AllocationId>().unwrap(),
            public_ip: Ipv4Addr::new(198, 51, 100, 1),
            association: None,
            pool: Some("p".into()),
            holder: None,
        },
        Address {
            allocation_id: "eipalloc-2".parse::<AllocationId>().unwrap(),
            public_ip: Ipv4Addr::new(198, 51, 100, 2),
            association: Some(Association {
                id: "eipassoc-2".parse::<AssociationId>().unwrap(),
                network_interface_id: Some("eni-2".parse::<EniId>().unwrap()),
                private_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
                instance_id: None,
            }),
            pool: Some("p".into()),
            holder: None,
        },
    ]
}

const LEAD: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claimer_leads_the_listing_the_others_wait_then_read_it() {
    let redis = RedisServer::start().unwrap();
    let (a, b, c) = (
        redis_as(&redis.url(), "p", "a"),
        redis_as(&redis.url(), "p", "b"),
        redis_as(&redis.url(), "p", "c"),
    );
    assert_eq!(a.shared_listing(LEAD).await.unwrap(), SharedListing::Lead);
    assert_eq!(
        b.shared_listing(LEAD).await.unwrap(),
        SharedListing::Pending
    );
    assert_eq!(
        c.shared_listing(LEAD).await.unwrap(),
        SharedListing::Pending
    );

    a.share_listing(Some(&listing()), Duration::from_secs(30))
        .await
        .unwrap();
    for who in [&b, &c, &a] {
        assert_eq!(
            who.shared_listing(LEAD).await.unwrap(),
            SharedListing::Recent(listing())
        );
    }
    // Another pool has its own slot.
    let other = redis_as(&redis.url(), "q", "b");
    assert_eq!(
        other.shared_listing(LEAD).await.unwrap(),
        SharedListing::Lead
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_listing_failed_hands_the_lead_on_at_once() {
    let redis = RedisServer::start().unwrap();
    let (a, b) = (
        redis_as(&redis.url(), "p", "a"),
        redis_as(&redis.url(), "p", "b"),
    );
    assert_eq!(a.shared_listing(LEAD).await.unwrap(), SharedListing::Lead);
    // Someone else ending "its" lead does not end ours.
    b.share_listing(None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        b.shared_listing(LEAD).await.unwrap(),
        SharedListing::Pending
    );
    a.share_listing(None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.shared_listing(LEAD).await.unwrap(), SharedListing::Lead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaders_lead_and_an_old_listing_both_expire() {
    let redis = RedisServer::start().unwrap();
    let (a, b) = (
        redis_as(&redis.url(), "p", "a"),
        redis_as(&redis.url(), "p", "b"),
    );
    let short = Duration::from_millis(300);
    assert_eq!(a.shared_listing(short).await.unwrap(), SharedListing::Lead);
    // `a` dies without a word: `b` leads once the lead runs out.
    eventually(
        "the dead leader's lead to expire",
        Duration::from_secs(10),
        || async { (b.shared_listing(LEAD).await.unwrap() == SharedListing::Lead).then_some(()) },
    )
    .await;
    b.share_listing(Some(&listing()), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        a.shared_listing(LEAD).await.unwrap(),
        SharedListing::Recent(listing())
    );
    eventually(
        "the shared listing to expire",
        Duration::from_secs(10),
        || async {
            (!matches!(
                a.shared_listing(LEAD).await.unwrap(),
                SharedListing::Recent(_)
            ))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_shared_listing_counts_as_none() {
    let redis = RedisServer::start().unwrap();
    let a = redis_as(&redis.url(), "p", "a");
    let mut conn = redis_conn(&redis.url()).await;
    let _: () = redis::cmd("SET")
        .arg(a.key("listing:v1"))
        .arg("{not a listing")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(a.shared_listing(LEAD).await.unwrap(), SharedListing::Lead);
}

/// gc drops a holder record it found stale only if it still says what gc read: a claim that
/// recorded a fresh assignment of the address meanwhile keeps its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_drops_a_stale_holder_record_only_while_it_is_unchanged() {
    let redis = RedisServer::start().unwrap();
    let gc = redis_as(&redis.url(), "p", "gc");
    let mut conn = redis_conn(&redis.url()).await;
    let holders = eipool::redis::key("p", "holders");
    let alloc: AllocationId = "eipalloc-1".parse().unwrap();
    let (seen, fresh) = ("eni-1/10.0.0.1|1000", "eni-2/10.0.0.2|2000");
    for value in [seen, fresh] {
        // gc read `seen`; a claim records a fresh assignment before gc drops it.
        let _: i64 = redis::cmd("HSET")
            .arg(&holders)
            .arg(alloc.as_str())
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let hget = redis::cmd("HGET").arg(&holders).arg(alloc.as_str()).clone();
    assert!(!gc.drop_holder_record(&alloc, seen).await.unwrap());
    let now: Option<String> = hget.query_async(&mut conn).await.unwrap();
    assert_eq!(now.as_deref(), Some(fresh), "the fresh record was dropped");
    // Unchanged since gc read it: dropped.
    assert!(gc.drop_holder_record(&alloc, fresh).await.unwrap());
    let now: Option<String> = hget.query_async(&mut conn).await.unwrap();
    assert_eq!(now, None);
}

/// A claimer whose listing turned out behind EC2 asks for one made after it: an older one is not
/// handed out; it leads the next listing (or waits for whoever does), and then gets that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_behind_ec2_gets_only_a_newer_listing() {
    let redis = RedisServer::start().unwrap();
    let (a, b) = (
        redis_as(&redis.url(), "p", "a"),
        redis_as(&redis.url(), "p", "b"),
    );
    let lived = Duration::from_secs(5);
    assert_eq!(a.shared_listing(LEAD).await.unwrap(), SharedListing::Lead);
    a.share_listing(Some(&listing()), lived).await.unwrap();
    let aged = Duration::from_millis(300);
    tokio::time::sleep(aged).await;
    let (got, age) = b.shared_listing_within(LEAD, lived).await.unwrap();
    assert_eq!(got, SharedListing::Recent(listing()));
    assert!(age >= aged && age < lived, "{age:?}");
    // Asked for one younger than that: b leads the next, a waits for it.
    let young = Duration::from_millis(100);
    let (got, _) = b.shared_listing_within(LEAD, young).await.unwrap();
    assert_eq!(got, SharedListing::Lead);
    let (got, _) = a.shared_listing_within(LEAD, young).await.unwrap();
    assert_eq!(got, SharedListing::Pending);
    let newer = listing()[..1].to_vec();
    b.share_listing(Some(&newer), lived).await.unwrap();
    let (got, age) = a.shared_listing_within(LEAD, young).await.unwrap();
    assert_eq!(got, SharedListing::Recent(newer));
    assert!(age < young, "{age:?}");
}

/// The pace's script does in Redis, atomically, what `plan::PaceState` decides (which the unit
/// tests pin down): the same tickets, the same waits (to the millisecond, rounded up), the same
/// cuts, step for step, through random sequences of takes, asks and throttled calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pace_script_takes_the_pure_paces_steps() {
    use eipool::decisions::{PaceState, DESCRIBE_PACE, MUTATING_PACE};
    use eipool::redis::PaceAsk;
    use rand::{Rng, SeedableRng};

    let redis = RedisServer::start().unwrap();
    let claims = redis_as(&redis.url(), "p", "a");
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let (mut takes, mut cuts) = (0, 0);
    for run in 0..24 {
        let rate = if run % 2 == 0 {
            MUTATING_PACE
        } else {
            DESCRIBE_PACE
        };
        let class = format!("agree-{run}");
        let mut now = 1_765_000_000_000.0 + f64::from(run) * 1e7 + rng.random::<f64>();
        let first = now.floor() * 1000.0;
        let mut pure = PaceState::new(&rate, now, first);
        for step in 0..80 {
            let ask = match (step, rng.random_range(0..10)) {
                (0, _) | (_, 0..5) => PaceAsk::Take,
                (_, 5..8) => PaceAsk::Due(rng.random_range(first - 2.0..pure.next + 2.0) as u64),
                // Below `first` too: calls made on a state Redis lost.
                _ => PaceAsk::Throttled(rng.random_range(first - 3.0..pure.next + 1.0) as u64),
            };
            let got = claims.pace_at(&class, &rate, ask, Some(now)).await.unwrap();
            let ctx = format!("run {run}, step {step}, {ask:?} at {now}: {got:?} vs {pure:?}");
            match ask {
                PaceAsk::Take => {
                    let (ticket, wait) = pure.take(&rate, now);
                    assert_eq!(got.ticket as f64, ticket, "{ctx}");
                    assert_eq!(
                        got.wait,
                        Some(Duration::from_millis(wait.ceil() as u64)),
                        "{ctx}"
                    );
                    takes += 1;
                }
                PaceAsk::Due(t) => {
                    let wait = pure.due_in(&rate, t as f64, now);
                    let wait = wait.map(|w| Duration::from_millis(w.ceil() as u64));
                    assert_eq!(got.wait, wait, "{ctx}");
                }
                PaceAsk::Throttled(t) => {
                    let cut = pure.throttled(&rate, t as f64, now);
                    assert_eq!(got.cut, cut, "{ctx}");
                    cuts += usize::from(cut);
                }
            }
            assert_eq!(got.recovering, pure.recovering(&rate), "{ctx}");
            assert!((got.rate - pure.r).abs() < 0.001, "{ctx}");
            now += f64::from(rng.random_range(0..700u32)) + rng.random::<f64>();
        }
    }
    // The sequences went through every kind of step.
    assert!(takes > 500 && cuts > 50, "{takes} takes, {cuts} cuts");
    // Redis keeps the state only while it matters (the schedule busy, the rate below its
    // ceiling), then a new state is the same.
    let mut conn = redis_conn(&redis.url()).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(claims.pace_key("agree-23"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "{ttl}");
}

/// The shared pace on Redis's own clock, as two claimers of one herd see it: EC2 throttles a
/// call of one, and the pace halves for both (a report of a call that went out before the cut
/// is the same congestion and does not cut again); with nothing more throttled, the rate grows
/// back to its ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_call_slows_the_herds_shared_pace_and_it_recovers() {
    use eipool::decisions::MUTATING_PACE;
    use eipool::redis::PaceAsk;

    let redis = RedisServer::start().unwrap();
    let (a, b) = (
        redis_as(&redis.url(), "p", "a"),
        redis_as(&redis.url(), "p", "b"),
    );
    let rate = MUTATING_PACE;
    let ask = |who: &eipool::redis::Redis, ask: PaceAsk| {
        let who = who.clone();
        async move { who.pace_at("mutating", &rate, ask, None).await.unwrap() }
    };
    let first = ask(&a, PaceAsk::Take).await;
    let before_cut = ask(&b, PaceAsk::Take).await;
    assert_eq!(first.wait, Some(Duration::ZERO), "{first:?}");
    assert!(
        !first.recovering && first.rate == rate.per_second,
        "{first:?}"
    );
    // Both calls go out when their tickets are due (a burst's are a spacing apart).
    eventually("b's turn", Duration::from_secs(10), || async {
        (ask(&b, PaceAsk::Due(before_cut.ticket)).await.wait == Some(Duration::ZERO)).then_some(())
    })
    .await;

    // a's call was throttled: the herd's pace halves.
    let cut = ask(&a, PaceAsk::Throttled(first.ticket)).await;
    assert!(cut.cut, "{cut:?}");
    assert!(cut.rate <= rate.per_second / 2.0 + 0.01, "{cut:?}");
    // b, which shares it, is paced at the new rate.
    let seen = ask(&b, PaceAsk::Take).await;
    assert!(seen.recovering && seen.rate < rate.per_second, "{seen:?}");
    // b's call, sent before the cut, throttled too: the same congestion, no second cut.
    let again = ask(&b, PaceAsk::Throttled(before_cut.ticket)).await;
    assert!(!again.cut && again.rate >= cut.rate, "{again:?}");

    // Nothing more throttled: back at the ceiling, for every claimer of the herd.
    let recovered = eventually(
        "the shared pace to grow back to its ceiling",
        Duration::from_secs(60),
        || async {
            let now = ask(&a, PaceAsk::Due(seen.ticket)).await;
            (!now.recovering).then_some(now)
        },
    )
    .await;
    assert_eq!(recovered.rate, rate.per_second, "{recovered:?}");
    let b_now = ask(&b, PaceAsk::Take).await;
    assert!(
        !b_now.recovering && b_now.rate == rate.per_second,
        "{b_now:?}"
    );
}
