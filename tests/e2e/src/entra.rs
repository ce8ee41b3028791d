//! A stand-in for Entra ID's token endpoint, for the Azure e2e tests: no identity provider
//! runs on a laptop, but Azurite (`--oauth basic`) checks the tokens it is given for
//! audience, issuer and lifetime, so the controller's whole path — credential, token
//! request, bearer header, TLS — is exercised against real parts everywhere but here.
//!
//! It serves `POST /<tenant>/oauth2/v2.0/token` over HTTPS with the dev-env certificate,
//! answers the client-credentials grant (client secret or federated assertion) the way
//! Entra ID does, and records each request for the test to inspect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the endpoint accepts: one application, by its secret or its federated token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub tenant: String,
    pub client_id: String,
    /// The client secret accepted (client-credentials with `client_secret`).
    pub secret: Option<String>,
    /// The federated token accepted (`client_assertion`, workload identity).
    pub assertion: Option<String>,
}

/// One token request as received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub tenant: String,
    pub form: BTreeMap<String, String>,
    pub granted: bool,
}

pub struct TokenServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
    principals: Arc<Mutex<Vec<Principal>>>,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: source the env file of scripts/dev-env.sh up"))
}

/// The dev CA as the only root: what the tests' own HTTPS clients trust.
pub fn client_tls() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(env("CLOUDKIT_DEV_CA")).expect("dev CA readable") {
        roots
            .add(cert.expect("dev CA is PEM"))
            .expect("dev CA is a certificate");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl TokenServer {
    /// Starts on a free loopback port; tokens live `lifetime_secs`.
    pub async fn start(principals: Vec<Principal>, lifetime_secs: u64) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(env("CLOUDKIT_DEV_TLS_CERT"))
            .expect("dev TLS cert readable")
            .map(|c| c.expect("dev TLS cert is PEM"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(env("CLOUDKIT_DEV_TLS_KEY")).expect("dev TLS key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let principals = Arc::new(Mutex::new(principals));
        let (log, accepted) = (requests.clone(), principals.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log, accepted) = (acceptor.clone(), log.clone(), accepted.clone());
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let Some((path, body)) = read_request(&mut tls).await else {
                            return;
                        };
                        let (status, answer, record) = answer(&path, &body, &accepted, lifetime_secs);
                        if let Some(record) = record {
                            log.lock().expect("log").push(record);
                        }
                        let response = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = tls.write_all(response.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self {
            port,
            requests,
            principals,
        }
    }

    /// `https://127.0.0.1:<port>`: the authority host to configure.
    pub fn authority(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Replaces what is accepted (a secret rotated on the application).
    pub fn accept(&self, principals: Vec<Principal>) {
        *self.principals.lock().expect("principals") = principals;
    }

    pub fn granted(&self) -> usize {
        self.requests.lock().expect("log").iter().filter(|r| r.granted).count()
    }

    pub fn refused(&self) -> usize {
        self.requests.lock().expect("log").iter().filter(|r| !r.granted).count()
    }
}

/// Reads one HTTP/1.1 request: its path and body (by content-length).
async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, String::from_utf8_lossy(&buf[head_end..]).to_string()))
}

fn answer(
    path: &str,
    body: &str,
    principals: &Mutex<Vec<Principal>>,
    lifetime: u64,
) -> (&'static str, String, Option<TokenRequest>) {
    let Some(tenant) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
    else {
        return ("404 Not Found", "{}".into(), None);
    };
    let form: BTreeMap<String, String> = url_form(body);
    let get = |k: &str| form.get(k).map(String::as_str);
    let principal = principals
        .lock()
        .expect("principals")
        .iter()
        .find(|p| p.tenant == tenant && Some(p.client_id.as_str()) == get("client_id"))
        .cloned();
    let granted = get("grant_type") == Some("client_credentials")
        && get("scope") == Some("https://storage.azure.com/.default")
        && principal.as_ref().is_some_and(|p| {
            (p.secret.is_some() && p.secret.as_deref() == get("client_secret"))
                || (p.assertion.is_some()
                    && p.assertion.as_deref() == get("client_assertion")
                    && get("client_assertion_type") == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))
        });
    let record = TokenRequest {
        tenant: tenant.to_owned(),
        form: form.clone(),
        granted,
    };
    if !granted {
        // What Entra ID says to a wrong secret or an unknown federated token.
        let body = serde_json::json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            "error_codes": [7000215],
        });
        return ("401 Unauthorized", body.to_string(), Some(record));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    // Azurite's basic OAuth checks audience, issuer and lifetime, not the signature.
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({
            "aud": "https://storage.azure.com", "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now, "nbf": now, "exp": now + lifetime, "tid": tenant, "appid": get("client_id"),
        }))
    );
    let body = serde_json::json!({
        "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token,
    });
    ("200 OK", body.to_string(), Some(record))
}

fn url_form(body: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}
