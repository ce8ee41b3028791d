//! The scale benchmark's smallest size (N = 100) as a smoke run, so that the benchmark
//! itself cannot rot: 100 objects of every kind it makes (Buckets, Queues, Topics, Tables,
//! Functions, 20 each) reach Ready, and after deleting them all nothing is left in the cluster or the
//! cloud. The figures are printed, not judged (bigger sizes:
//! `scripts/bench.sh scale 1000 10000`), except the Kubernetes writes a new object costs:
//! the finalizer rides on the external name's write, so five (name and finalizer,
//! `Creating`, create succeeded, `Ready`, the `Created` Event), not six.

use std::time::Duration;

use cloudkit_e2e::bench::{self, BenchKind, Figures, Options};

#[tokio::test]
async fn hundred_objects_of_every_kind_ready_then_all_gone() {
    let mut opts = Options::new(100);
    opts.kinds = BenchKind::ALL.to_vec();
    // Short: a smoke run, not the measurement; the resync still falls inside the window.
    opts.resync = Duration::from_secs(10);
    opts.idle = Duration::from_secs(12);
    opts.probes = 3;
    let f = bench::run(&opts).await;
    println!("{}\n{}\n{}", Figures::header(), f.row(), f.requests());
    assert_eq!(f.not_ready, 0, "every object reaches Ready");
    assert_eq!(f.left_in_cluster, 0, "every object is released");
    assert_eq!(f.left_in_cloud, 0, "nothing is left in the cloud");
    assert!(f.resyncs_in_idle > 0, "quiet resyncs ran in the window");
    // Room for a retried write or two on a busy machine, not for a sixth write each.
    assert!(
        f.k8s_writes_per_object <= 5.2,
        "{} Kubernetes writes per object to converge, expected 5",
        f.k8s_writes_per_object
    );
}
