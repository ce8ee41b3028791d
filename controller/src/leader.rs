//! Leader election on a `coordination.k8s.io` Lease, so that several replicas can run and
//! one reconciles: two controllers acting on the same objects would race their creates.
//! `kube-lease-manager` renews the lease in a task of its own; this module only says when
//! this replica leads and when it has stopped leading.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long a lease lasts without renewal: a replica killed without a goodbye is replaced
/// after at most this long (the bound is 20 s).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this long before its lease expires.
const RENEW_BEFORE: Duration = Duration::from_secs(5);

/// This replica's part in the election, from the moment it has joined it.
pub struct Candidate {
    leading: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    identity: String,
}

/// Joins the election for Lease `namespace`/`name` as `identity`.
pub async fn join(client: Client, namespace: &str, name: &str, identity: &str) -> Result<Candidate, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION.as_secs())
        .with_grace(RENEW_BEFORE.as_secs())
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    Ok(Candidate {
        leading,
        task,
        identity: identity.to_owned(),
    })
}

impl Candidate {
    /// Resolves once this replica holds the lease.
    pub async fn leads(&mut self) -> Result<(), watch::error::RecvError> {
        self.leading.wait_for(|leading| *leading).await.map(|_| ())?;
        info!(identity = %self.identity, "leading: this replica reconciles");
        Ok(())
    }

    /// Resolves when this replica no longer holds the lease (another took it after a
    /// renewal failed); it must stop reconciling at once.
    pub async fn lost(&mut self) {
        // A closed channel means the renewing task is gone: not leading either.
        let _ = self.leading.wait_for(|leading| !*leading).await;
        warn!(identity = %self.identity, "lost the lease: another replica leads now");
    }

    /// Gives the lease up, so a standby need not wait for it to expire.
    pub async fn resign(self) {
        let Candidate {
            leading,
            task,
            identity,
        } = self;
        // Dropping the last receiver makes the renewing task release the lease and end.
        drop(leading);
        match tokio::time::timeout(RENEW_BEFORE, task).await {
            Ok(Ok(Ok(_))) => info!(%identity, "released the lease"),
            Ok(Ok(Err(e))) => warn!(%identity, "releasing the lease: {e}"),
            Ok(Err(e)) => warn!(%identity, "lease task: {e}"),
            Err(_) => warn!(%identity, "releasing the lease timed out; it expires by itself"),
        }
    }
}
