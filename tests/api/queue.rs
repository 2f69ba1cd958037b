//! The job lifecycle behind the queue seam (`orderhost::queue::JobQueue`), driven directly
//! on both backends: enqueue with the order, claim in priority order, retry later, bury,
//! the dead-letter calls, release on cancellation, depth per priority.

use orderhost::clock::Clock as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, json_ok, new_client, spawn_app_with},
};

backend_tests!(the_job_lifecycle_behind_one_seam);

async fn order(app: &TestApp, token: &str, stock: &str) -> String {
    let response = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "stockId": stock, "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    json_ok(response, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn the_job_lifecycle_behind_one_seam(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let queue = app.state.queue.clone();
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    app.register("reg@example.com", None).await;
    let (_, regular) = app.login_as("reg@example.com", None).await;
    let vip = app
        .user_with_role("vip@example.com", orderhost::auth::Role::Customer, None)
        .await;
    app.exec("update users set vip = true where email = 'vip@example.com'")
        .await;
    // Enqueued with their orders: waiting per priority.
    let first = order(&app, &regular, &stock).await;
    let second = order(&app, &regular, &stock).await;
    let urgent = order(&app, &vip, &stock).await;
    // Redis mode: the relay hands the outbox rows over.
    app.outbox_drained().await;
    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.waiting.get(&10), Some(&2));
    assert_eq!(depth.waiting.get(&100), Some(&1));
    assert_eq!((depth.in_flight, depth.dead, depth.total()), (0, 0, 3));

    // Claimed highest priority first, FIFO within a priority.
    let now = app.clock.now_ms();
    let jobs = queue.claim("w1", now, 10).await.unwrap();
    let claimed: Vec<&str> = jobs.iter().map(|j| j.order_id.as_str()).collect();
    assert_eq!(claimed, [urgent.as_str(), first.as_str(), second.as_str()]);
    assert_eq!(queue.depth().await.unwrap().in_flight, 3);

    // Retry later and bury are guarded by the lease.
    assert!(
        !queue
            .retry_later("w2", &jobs[1], now, "not mine", now)
            .await
            .unwrap()
    );
    assert!(
        queue
            .retry_later("w1", &jobs[1], now + 1_000, "flaky", now)
            .await
            .unwrap()
    );
    assert!(
        queue.claim("w1", now, 10).await.unwrap().is_empty(),
        "not before run_at"
    );
    assert!(queue.bury("w1", &jobs[2], "gave up", now).await.unwrap());
    let (dead, total) = queue.dead(None, 10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(dead[0].order_id, second);
    assert_eq!(dead[0].last_error.as_deref(), Some("gave up"));

    // Dead letters: discarded; only dead ones. (Retrying one puts its order back to
    // PENDING in the same write: tests/api/dead_letters.rs.)
    assert!(!queue.discard_dead(&first).await.unwrap());
    let again = queue.claim("w1", now + 1_000, 10).await.unwrap();
    let again: Vec<(&str, i32)> = again
        .iter()
        .map(|j| (j.order_id.as_str(), j.attempts))
        .collect();
    assert_eq!(
        again,
        [(first.as_str(), 2)],
        "a retried job keeps its attempts"
    );
    let lease = app.state.config.queue.lease_ms;
    let reclaimed = queue.claim("w3", now + lease + 2_000, 10).await.unwrap();
    let reclaimed_ids: Vec<&str> = reclaimed.iter().map(|j| j.order_id.as_str()).collect();
    assert_eq!(
        reclaimed_ids,
        [urgent.as_str(), first.as_str()],
        "expired leases come back, in claim order"
    );
    assert!(queue.bury("w3", &reclaimed[1], "again", now).await.unwrap());
    assert_eq!(queue.dead(None, 10, 0).await.unwrap().1, 2);
    assert!(queue.discard_dead(&first).await.unwrap());
    assert!(!queue.discard_dead(&first).await.unwrap());
    assert_eq!(queue.depth().await.unwrap().dead, 1);

    // Release drops a cancelled order's job.
    assert!(queue.release(&urgent).await.unwrap());
    assert!(!queue.release(&urgent).await.unwrap());
    assert_eq!(
        queue.depth().await.unwrap().total(),
        0,
        "the reclaimed urgent job went"
    );
}
