//! Several replicas with `--leader-elect`: one reconciles, the others stand by; a killed
//! leader is replaced within the lease's 15 s, a stopped one gives the lease up at once, and
//! no cloud resource is made twice on the way.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudkit_e2e::{Harness, eventually, http_get, ready_at_generation};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

struct Replica {
    child: Child,
    port: u16,
}

fn replica(h: &Harness, n: usize) -> Replica {
    let bin = std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    let log = File::create(std::env::temp_dir().join(format!("cloudkit-{}-replica{n}.log", h.ns))).expect("log");
    let child = Command::new(bin)
        .args([
            "controller",
            "--namespace",
            &h.ns,
            "--log-format",
            "json",
            "--leader-elect",
        ])
        .args([
            "--lease-namespace",
            &h.ns,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "info,kube=warn")
        .env("POD_NAME", format!("replica{n}"))
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("cloudkit starts");
    Replica { child, port }
}

async fn role(r: &Replica) -> String {
    http_get(r.port, "/readyz").await.1
}

/// Waits until exactly one of `replicas` leads; its index.
async fn leader_among(replicas: &[&Replica]) -> usize {
    let started = Instant::now();
    loop {
        let mut roles = Vec::new();
        for r in replicas {
            roles.push(role(r).await);
        }
        let leaders: Vec<usize> = (0..roles.len()).filter(|i| roles[*i] == "leader").collect();
        if leaders.len() == 1 && roles.iter().all(|r| r == "leader" || r == "standby") {
            return leaders[0];
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no single leader: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reconciles(r: &Replica) -> u64 {
    let (_, body) = http_get(r.port, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("cloudkit_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn one_replica_reconciles_and_another_takes_over() {
    let mut h = Harness::new("leader").await;
    h.kill_controller();
    let mut a = replica(&h, 1);
    let mut b = replica(&h, 2);
    let first = leader_among(&[&a, &b]).await;
    let (leader, standby) = if first == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };

    let one = h.bucket_name("one");
    h.apply_bucket(&one, json!({})).await;
    h.wait_bucket(&one, "Ready", ready_at_generation).await;
    assert!(reconciles(leader).await > 0);
    assert_eq!(reconciles(standby).await, 0, "the standby reconciled");

    // SIGKILL: no goodbye; the standby takes over when the lease expires.
    leader.child.kill().expect("kill the leader");
    leader.child.wait().expect("reap");
    let killed = Instant::now();
    let two = h.bucket_name("two");
    h.apply_bucket(&two, json!({})).await;
    eventually("the standby leads", || async { role(standby).await == "leader" }).await;
    let handover = killed.elapsed();
    println!(
        "leader SIGKILLed: the standby led after {:.1} s",
        handover.as_secs_f64()
    );
    assert!(handover < Duration::from_secs(20), "{handover:?}");
    h.wait_bucket(&two, "Ready", ready_at_generation).await;

    // A graceful stop gives the lease up at once: its holder is cleared as the process ends.
    let mut c = replica(&h, 3);
    eventually("the new replica stands by", || async { role(&c).await == "standby" }).await;
    let stopped = Command::new("kill")
        .args(["-TERM", &standby.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    standby.child.wait().expect("reap");
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.ns);
    let lease = leases.get("cloudkit").await.expect("the Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert!(holder.is_empty(), "still held by {holder:?} after a graceful stop");
    let stopped_at = Instant::now();
    eventually("the third replica leads", || async { role(&c).await == "leader" }).await;
    println!(
        "leader stopped gracefully: the standby led after {:.1} s",
        stopped_at.elapsed().as_secs_f64()
    );

    // Nothing was made twice: exactly the two buckets exist.
    let three = h.bucket_name("three");
    h.apply_bucket(&three, json!({})).await;
    h.wait_bucket(&three, "Ready", ready_at_generation).await;
    let listed = h.s3.list_buckets().send().await.expect("ListBuckets");
    let ours = listed
        .buckets()
        .iter()
        .filter(|b| b.name().is_some_and(|n| n.starts_with(&h.ns)))
        .count();
    assert_eq!(ours, 3);
    let _ = c.child.kill();
    let _ = c.child.wait();
}
