//! SIGTERM: intake stops (503), in-flight requests finish within the grace period and are
//! recorded, exit code 0.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{receipt_ids, wait_for, Config, Herald, Mode, Receiver, Sub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_and_exits_zero() {
    let rx = Receiver::start_with(Mode::Delay(Duration::from_millis(1200), 200)).await;
    let mut h = Herald::start(
        Config::default()
            .grace("10s")
            .sub(Sub::new("slow", &rx.url("/slow")).timeout("5s")),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let receipt = h
            .ingest(&json!({"event_type": "X", "payload": {"n": n}}))
            .await;
        ids.push(receipt_ids(&receipt)[0].1.clone());
    }
    wait_for(Duration::from_secs(10), "5 requests in flight", || async {
        (rx.in_flight() == 5).then_some(())
    })
    .await;

    let sent = Instant::now();
    h.sigterm();
    // During the drain ingest answers 503 with a JSON error (or the port is already closed).
    let mut saw_503 = false;
    // Events accepted in the first instant after the signal may still go out before the
    // dispatcher stops (or after the restart below).
    let mut accepted_late = 0;
    while sent.elapsed() < Duration::from_millis(1000) {
        match h
            .http
            .post(h.url("/v1/events"))
            .json(&json!({"event_type": "X", "payload": {}}))
            .send()
            .await
        {
            Ok(res) => {
                let status = res.status().as_u16();
                if status == 503 {
                    let body: serde_json::Value = res.json().await.unwrap();
                    crate::harness::assert_error_body(&body, "503");
                    saw_503 = true;
                    break;
                }
                assert!(
                    status == 202 && sent.elapsed() < Duration::from_millis(200),
                    "ingest answered {status} during the drain"
                );
                accepted_late += 1;
            }
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "ingest never answered 503 while draining");
    let (status, _) = h.get("/readyz").await;
    assert_eq!(status, 503, "/readyz while draining");

    let exit = h.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", h.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "beyond the grace period"
    );
    let answered_ok = rx.succeeded();
    for id in &ids {
        assert!(
            answered_ok.contains(id),
            "in-flight request {id} was cut; log:\n{}",
            h.log_text()
        );
    }
    assert!(
        (5..=5 + accepted_late).contains(&rx.answered()),
        "{} answered, {accepted_late} accepted after the signal",
        rx.answered()
    );

    // The outcomes were flushed: after a restart every delivery is delivered, none sent again.
    rx.set(Mode::Status(200));
    h.restart().await;
    for id in &ids {
        assert_eq!(h.delivery_status(id).await, "delivered", "{id}");
    }
    // Events accepted just before the 503s began are sent now, after the restart.
    wait_for(Duration::from_secs(10), "nothing queued", || async {
        (h.subscriber("slow").await["queued"] == 0).then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(
            rx.count_of(id),
            1,
            "{id} was sent again after a clean shutdown"
        );
    }
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_a_black_hole() {
    let rx = Receiver::start_with(Mode::BlackHole).await;
    let mut h = Herald::start(
        Config::default()
            .grace("1s")
            .sub(Sub::new("hole", &rx.url("/hole")).timeout("30s")),
    )
    .await;
    let receipt = h.ingest(&json!({"event_type": "X", "payload": {}})).await;
    let id = receipt_ids(&receipt)[0].1.clone();
    wait_for(Duration::from_secs(10), "the request in flight", || async {
        (rx.in_flight() == 1).then_some(())
    })
    .await;
    let sent = Instant::now();
    h.sigterm();
    let exit = h.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", h.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "took {:?} with grace = 1s",
        sent.elapsed()
    );
    // The unfinished delivery is pending again and goes out after the restart.
    rx.set(Mode::Status(200));
    h.restart().await;
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    h.assert_no_panic();
}
