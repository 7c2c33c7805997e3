//! Certificates for the demo and the tests: a local CA, a server
//! certificate for 127.0.0.1/localhost, client certificates for system
//! callers. Production deployments bring their own.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A PEM certificate and its private key.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that can issue more.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    pub fn new(name: &str) -> Result<Authority, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(|e| e.to_string())?;
        Ok(Authority { issuer })
    }

    /// The CA certificate (what clients and servers trust).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<Pem, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .map_err(|e| e.to_string())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<Pem, String> {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose SAN is the DNS name `name`.
    pub fn client(&self, name: &str) -> Result<Pem, String> {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The demo's files in `dir`: `ca.pem`, `gateway.pem`/`gateway.key`
/// (127.0.0.1 and localhost), `city-platform.pem`/`.key` (a client
/// certificate the demo config maps to the city platform's principal), and
/// `upstream.pem`/`.key` for simulators serving TLS.
pub fn write_demo(dir: &std::path::Path) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = Authority::new("Lianqiao demo CA")?;
    write("ca.pem", &ca.cert_pem())?;
    let server = ca.server(&["127.0.0.1", "localhost"])?;
    write("gateway.pem", &server.cert)?;
    write("gateway.key", &server.key)?;
    let client = ca.client("city-platform.lianqiao.demo")?;
    write("city-platform.pem", &client.cert)?;
    write("city-platform.key", &client.key)?;
    let upstream = ca.server(&["127.0.0.1", "localhost"])?;
    write("upstream.pem", &upstream.cert)?;
    write("upstream.key", &upstream.key)?;
    Ok(())
}
