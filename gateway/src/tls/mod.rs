//! Ingress TLS (rustls): TLS 1.2 and 1.3 only with the AEAD suites of the
//! ring provider, the certificate reloaded when its files change, and
//! optional client certificates that stand for configured principals
//! (system callers such as the city platform).

pub mod certs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use lianqiao_policy::Identity;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A connection's verified client certificate, as the principal it maps to
/// (`None` when the certificate verified but maps to no principal).
#[derive(Debug, Clone)]
pub struct ClientCert(pub Option<Identity>);

/// What `[server.tls]` resolved to.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
    /// (DNS name in the client certificate's SAN, principal).
    pub clients: Vec<(String, Identity)>,
}

/// The live TLS configuration; `reload` swaps in new certificates.
pub struct TlsState {
    pub files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    stamp: RwLock<Vec<Option<SystemTime>>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn stamp(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The rustls server configuration for `files`.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: not a PEM private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsState {
    pub fn load(files: TlsFiles) -> Result<TlsState, String> {
        let config = server_config(&files)?;
        Ok(TlsState {
            stamp: RwLock::new(stamp(&files)),
            files,
            config: RwLock::new(Arc::new(config)),
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reload the certificate files if they changed; a broken change keeps
    /// the old certificate and says why.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = stamp(&self.files);
        let changed = match self.stamp.read() {
            Ok(s) => *s != now,
            Err(_) => true,
        };
        if !changed {
            return None;
        }
        if let Ok(mut s) = self.stamp.write() {
            *s = now;
        }
        Some(server_config(&self.files).map(|config| {
            if let Ok(mut c) = self.config.write() {
                *c = Arc::new(config);
            }
        }))
    }

    /// The principal a verified client certificate stands for.
    pub fn client(&self, cert: &CertificateDer<'_>) -> Option<Identity> {
        let ee = webpki::EndEntityCert::try_from(cert).ok()?;
        self.files.clients.iter().find_map(|(name, identity)| {
            let name = ServerName::try_from(name.as_str()).ok()?;
            ee.verify_is_valid_for_subject_name(&name)
                .is_ok()
                .then(|| identity.clone())
        })
    }
}

/// Poll the certificate files every two seconds.
pub async fn watch(state: Arc<TlsState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        match state.reload_if_changed() {
            Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
            Some(Err(e)) => {
                tracing::error!(error = %e, "TLS certificate change refused; the old one keeps serving")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_maps_to_its_configured_principal() {
        let dir = tempfile::tempdir().unwrap();
        certs::write_demo(dir.path()).unwrap();
        let identity = lianqiao_policy::authn::identity(
            "city-platform",
            lianqiao_policy::Level::City,
            "1501",
            vec![],
            "mtls",
        )
        .unwrap();
        let state = TlsState::load(TlsFiles {
            cert: dir.path().join("gateway.pem"),
            key: dir.path().join("gateway.key"),
            client_ca: Some(dir.path().join("ca.pem")),
            require_client_cert: false,
            clients: vec![("city-platform.lianqiao.demo".into(), identity.clone())],
        })
        .unwrap();
        let client = read_certs(&dir.path().join("city-platform.pem")).unwrap();
        assert_eq!(state.client(&client[0]), Some(identity));
        let server = read_certs(&dir.path().join("gateway.pem")).unwrap();
        assert_eq!(
            state.client(&server[0]),
            None,
            "another name maps to nobody"
        );
    }
}
