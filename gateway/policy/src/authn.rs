//! Credentials → identities: signed JWTs from configured issuers, or API
//! keys stored hashed. The declared purpose is added per request.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::division;
use crate::principal::{Level, Principal};

/// Who a credential says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub level: Level,
    pub division: String,
    pub roles: Vec<String>,
    /// `jwt:<issuer>` or `api-key`.
    pub via: String,
}

impl Identity {
    pub fn with_purpose(&self, purpose: &str) -> Principal {
        Principal::new(
            self.id.clone(),
            self.level,
            self.division.clone(),
            self.roles.iter().cloned(),
            purpose,
        )
    }
}

/// Why a credential was refused; each has a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credential: send `Authorization: Bearer <token>` or `X-Api-Key: <key>` (the demo writes tokens to target/demo/tokens.json)"
    )]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the token has expired; get a new one")]
    Expired,
    #[error("the token is not yet valid (nbf in the future)")]
    NotYetValid,
    #[error("the token's signature does not verify against any configured issuer")]
    BadSignature,
    #[error("the token's issuer `{0}` is not configured")]
    UnknownIssuer(String),
    #[error("the token is not for this gateway (audience)")]
    WrongAudience,
    #[error("the token's claims are not usable: {0}")]
    BadClaims(String),
    #[error("unknown API key")]
    UnknownApiKey,
}

impl AuthError {
    /// The reason code, stable for clients.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "credential_missing",
            AuthError::Malformed => "credential_malformed",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::BadSignature => "token_signature_invalid",
            AuthError::UnknownIssuer(_) => "token_issuer_unknown",
            AuthError::WrongAudience => "token_audience_invalid",
            AuthError::BadClaims(_) => "token_claims_invalid",
            AuthError::UnknownApiKey => "api_key_unknown",
        }
    }
}

/// The claims a Lianqiao token carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub level: String,
    pub division: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// One trusted token issuer.
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// One API key, stored as the SHA-256 of the key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub sha256: String,
    pub identity: Identity,
}

#[derive(Default)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    api_keys: HashMap<String, Identity>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            )
            .field("api_keys", &self.api_keys.len())
            .finish()
    }
}

/// Parse an algorithm name as config spells it.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

/// A decoding key from a PEM public key for `algorithm`.
pub fn decoding_key(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    match algorithm {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        other => {
            return Err(format!(
                "{other:?} is not accepted; use EdDSA, ES256 or RS256"
            ));
        }
    }
    .map_err(|e| format!("not a usable {algorithm:?} public key (PEM): {e}"))
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Authenticator {
    pub fn new(issuers: Vec<Issuer>, api_keys: Vec<ApiKey>) -> Authenticator {
        Authenticator {
            issuers,
            api_keys: api_keys
                .into_iter()
                .map(|k| (k.sha256.to_ascii_lowercase(), k.identity))
                .collect(),
        }
    }

    /// The identity behind the request's `Authorization` or `X-Api-Key`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Identity, AuthError> {
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(AuthError::Malformed)?;
            return self.verify_token(token);
        }
        if let Some(key) = api_key {
            return self
                .api_keys
                .get(&sha256_hex(key.trim()))
                .cloned()
                .ok_or(AuthError::UnknownApiKey);
        }
        Err(AuthError::Missing)
    }

    fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        // Pick the issuer by the (unverified) `iss`; everything is then
        // verified against that issuer's key alone.
        let unverified: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| AuthError::BadClaims(e.to_string()))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == unverified.iss)
            .ok_or_else(|| AuthError::UnknownIssuer(unverified.iss.clone()))?;
        let mut validation = Validation::new(issuer.algorithm);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[&issuer.audience]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &issuer.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::BadSignature
                }
                _ => AuthError::BadClaims(e.to_string()),
            })?
            .claims;
        let level = Level::parse(&claims.level).ok_or_else(|| {
            AuthError::BadClaims(format!(
                "`level` must be one of {}, got `{}`",
                Level::names(),
                claims.level
            ))
        })?;
        identity(
            &claims.sub,
            level,
            &claims.division,
            claims.roles,
            &issuer.issuer,
        )
        .map_err(AuthError::BadClaims)
    }
}

/// An identity whose division code agrees with its level.
pub fn identity(
    id: &str,
    level: Level,
    division: &str,
    roles: Vec<String>,
    via: &str,
) -> Result<Identity, String> {
    if id.is_empty() {
        return Err("`sub` is empty".into());
    }
    match division::level_of(division) {
        Some(l) if l == level => {}
        _ => {
            return Err(format!(
                "`division` {division} is not a {level}-level division code"
            ));
        }
    }
    Ok(Identity {
        id: id.to_string(),
        level,
        division: division.to_string(),
        roles,
        via: via.to_string(),
    })
}

/// A fresh Ed25519 key pair as PEM: (private PKCS#8, public SPKI).
pub fn generate_ed25519() -> Result<(String, String), String> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?
        .to_string();
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok((private, public))
}

/// Sign `claims` with an Ed25519 private key (PEM): how the demo and the
/// tests get tokens, and `lianqiao token` for operators.
pub fn issue_ed25519(private_pem: &str, claims: &Claims) -> Result<String, String> {
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
