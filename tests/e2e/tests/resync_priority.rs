//! Watch-triggered work goes before periodic resyncs: while resyncs of in-sync objects keep
//! every worker of a kind busy (a slow cloud, few workers), a new object still starts at
//! once and is Ready as fast as its own calls allow, instead of queueing behind the resyncs.
//!
//! The cloud is made slow by a relay in front of moto that holds each request 150 ms, and the
//! controller runs with 2 workers a kind: 40 Buckets resyncing every 2 s ask for 20 resyncs
//! a second, about four times what 2 workers give. Without the workers kept for watch-driven
//! work, the new bucket waits behind the ~40 resyncs due before it (~7 s).

use std::time::{Duration, Instant};

use cloudkit_crds::Bucket;
use cloudkit_e2e::{Harness, eventually, ready_at_generation};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DELAY: Duration = Duration::from_millis(150);

/// Relays to moto, holding each chunk the controller sends for `DELAY`.
async fn slow_relay(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(DELAY).await;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

#[tokio::test]
async fn a_new_object_does_not_queue_behind_resyncs() {
    let mut h = Harness::new("priority").await;
    h.kill_controller();
    let relay = slow_relay(h.moto_port()).await;
    // Made with rare resyncs, so that the fleet is Ready before the resyncs start to crowd.
    let endpoint = format!("http://127.0.0.1:{relay}");
    h.provider_config_with("slow", &endpoint, json!({"resyncInterval": "60s"}))
        .await;
    h.start_controller_with(&["--concurrency", "2"]);
    let fleet: Vec<String> = (0..40).map(|i| h.bucket_name(&format!("f{i}"))).collect();
    for name in &fleet {
        h.apply::<Bucket>(name, json!({"providerConfigRef": {"name": "slow"}}))
            .await;
    }
    eventually("the fleet Ready", || async {
        let mut ready = 0;
        for name in &fleet {
            let b = h.api::<Bucket>().get(name).await.expect("get bucket");
            ready += usize::from(ready_at_generation(&b));
        }
        ready == fleet.len()
    })
    .await;
    // Every 2 s from now on: every worker is busy with resyncs.
    h.provider_config_with("slow", &endpoint, json!({"resyncInterval": "2s"}))
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = h.reconciles("Bucket").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let per_second = (h.reconciles("Bucket").await - before) as f64 / 4.0;
    println!("resyncs under way: {per_second:.1} reconciles a second");

    let started = Instant::now();
    let new = h.bucket_name("new");
    h.apply::<Bucket>(&new, json!({"providerConfigRef": {"name": "slow"}}))
        .await;
    h.wait::<Bucket>(&new, "Ready", ready_at_generation).await;
    let took = started.elapsed();
    // A bucket's create is ~10 requests one after another: ~1.5 s at 150 ms each.
    println!("new bucket Ready in {took:?} while the resyncs keep 2 workers busy");
    assert!(
        took < Duration::from_secs(5),
        "the new bucket waited behind resyncs: Ready after {took:?}; log: {}",
        h.log.display()
    );
}
