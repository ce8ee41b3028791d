//! The HTTP client the Azure and GCP backends share: reqwest with rustls on ring, the
//! provider kube already uses. reqwest's own `rustls` feature brings aws-lc, and two
//! providers in one process make rustls panic at the first handshake.

use std::sync::Arc;
use std::time::Duration;

/// A client bounded by `connect` and `request` timeouts; `cloud` names it in messages.
pub(crate) fn client(cloud: &str, connect: Duration, request: Duration) -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let tls = match versions.clone().with_platform_verifier() {
        Ok(builder) => builder.with_no_client_auth(),
        // No usable system roots: plain-HTTP endpoints (emulators) still work, and HTTPS
        // calls fail naming an unknown issuer rather than the controller failing to start.
        Err(e) => {
            tracing::warn!("{cloud} HTTPS: no system root certificates ({e}); only http:// endpoints will work");
            versions
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("building the {cloud} HTTP client: {e}"))
}
