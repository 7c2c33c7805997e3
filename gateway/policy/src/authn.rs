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
    /// Tokens verified before, by their SHA-256: signature verification
    /// (EdDSA: ~40 µs) once per token, not per request. Only time can
    /// change a verified token's verdict, so an entry keeps its `exp` and
    /// `nbf` and is checked against the clock on every hit; keys do not
    /// change in an authenticator's life (a reload builds a new one).
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Clone)]
struct Verified {
    identity: Identity,
    exp: u64,
    nbf: Option<u64>,
}

/// Verified tokens remembered at most; past it, the expired go, then all.
const VERIFIED_TOKENS: usize = 10_000;
/// Clock skew allowed on `exp` and `nbf`, seconds.
const LEEWAY_S: u64 = 30;

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
            verified: Default::default(),
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
            return self.verified_token(token);
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

    /// A token's identity, from the cache when this token was verified
    /// before and is still within its validity.
    fn verified_token(&self, token: &str) -> Result<Identity, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let lock = || match self.verified.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = now();
        if let Some(hit) = lock().get(&key).cloned() {
            if now > hit.exp + LEEWAY_S {
                return Err(AuthError::Expired);
            }
            if hit.nbf.is_some_and(|nbf| now + LEEWAY_S < nbf) {
                return Err(AuthError::NotYetValid);
            }
            return Ok(hit.identity);
        }
        let (identity, exp, nbf) = self.verify_token(token)?;
        let mut cache = lock();
        if cache.len() >= VERIFIED_TOKENS {
            cache.retain(|_, v| now <= v.exp + LEEWAY_S);
            if cache.len() >= VERIFIED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Verified {
                identity: identity.clone(),
                exp,
                nbf,
            },
        );
        Ok(identity)
    }

    fn verify_token(&self, token: &str) -> Result<(Identity, u64, Option<u64>), AuthError> {
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
        validation.leeway = LEEWAY_S;
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
        let (exp, nbf) = (claims.exp, claims.nbf);
        identity(
            &claims.sub,
            level,
            &claims.division,
            claims.roles,
            &issuer.issuer,
        )
        .map(|id| (id, exp, nbf))
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
    // Control characters separate the parts of the decision cache's key;
    // no identity may carry one.
    if id
        .chars()
        .chain(roles.iter().flat_map(|r| r.chars()))
        .any(char::is_control)
        || roles.iter().any(|r| r.contains(','))
    {
        return Err("`sub` and `roles` may not contain control characters or commas".into());
    }
    // A token may carry the national form of a region or city (`150100`).
    let division = division::canonical(division);
    match division::level_of(division) {
        Some(l) if l == level => {}
        _ => {
            return Err(format!(
                "`division` {division} is not a {level}-level unified division code ({})",
                division::CONVENTION
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Authenticator, String) {
        let (private, public) = generate_ed25519().unwrap();
        let issuer = Issuer {
            issuer: "test".into(),
            audience: "lianqiao".into(),
            key: decoding_key(Algorithm::EdDSA, public.as_bytes()).unwrap(),
            algorithm: Algorithm::EdDSA,
        };
        let token = issue_ed25519(
            &private,
            &Claims {
                sub: "alice".into(),
                iss: "test".into(),
                aud: "lianqiao".into(),
                exp: now() + 3600,
                nbf: None,
                level: "street".into(),
                division: "150103001".into(),
                roles: vec![],
            },
        )
        .unwrap();
        (Authenticator::new(vec![issuer], vec![]), token)
    }

    #[test]
    fn a_token_is_verified_once_and_still_expires_from_the_cache() {
        let (auth, token) = setup();
        let header = format!("Bearer {token}");
        let first = auth.authenticate(Some(&header), None).unwrap();
        assert_eq!(first.id, "alice");
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert_eq!(auth.authenticate(Some(&header), None).unwrap(), first);
        // Time passes beyond `exp` (+ leeway): the cached verdict ends too.
        for v in auth.verified.lock().unwrap().values_mut() {
            v.exp = now() - LEEWAY_S - 1;
        }
        assert_eq!(
            auth.authenticate(Some(&header), None),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn an_altered_token_is_never_served_from_the_cache() {
        let (auth, token) = setup();
        auth.authenticate(Some(&format!("Bearer {token}")), None)
            .unwrap();
        let mut altered = token.into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {altered}")), None),
            Err(AuthError::BadSignature | AuthError::BadClaims(_))
        ));
    }
}
