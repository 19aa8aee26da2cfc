//! The Redis side of the claim protocol, through the library against a real redis-server.

use std::net::Ipv4Addr;
use std::time::Duration;

use eipool::model::{Address, AllocationId, Association, AssociationId, EniId};
use eipool::redis::SharedListing;
use eipool_lab::servers::RedisServer;

use crate::harness::{claims, eventually, redis_conn};

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
        claims(&redis.url(), "p", "a"),
        claims(&redis.url(), "p", "b"),
        claims(&redis.url(), "p", "c"),
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
    let other = claims(&redis.url(), "q", "b");
    assert_eq!(
        other.shared_listing(LEAD).await.unwrap(),
        SharedListing::Lead
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_listing_failed_hands_the_lead_on_at_once() {
    let redis = RedisServer::start().unwrap();
    let (a, b) = (
        claims(&redis.url(), "p", "a"),
        claims(&redis.url(), "p", "b"),
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
        claims(&redis.url(), "p", "a"),
        claims(&redis.url(), "p", "b"),
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
    let a = claims(&redis.url(), "p", "a");
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
    let gc = claims(&redis.url(), "p", "gc");
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
    assert!(!gc.drop_holder(&alloc, seen).await.unwrap());
    let now: Option<String> = hget.query_async(&mut conn).await.unwrap();
    assert_eq!(now.as_deref(), Some(fresh), "the fresh record was dropped");
    // Unchanged since gc read it: dropped.
    assert!(gc.drop_holder(&alloc, fresh).await.unwrap());
    let now: Option<String> = hget.query_async(&mut conn).await.unwrap();
    assert_eq!(now, None);
}
