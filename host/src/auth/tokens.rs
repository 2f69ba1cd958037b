//! Access tokens (HS256 JWTs) and refresh tokens (random, stored only as a SHA-256 hash).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;

/// What an access token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tenant: String,
    /// Role.
    pub role: Role,
    /// VIP flag at issue time.
    pub vip: bool,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// Why an access token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Past its expiry.
    #[error("the access token has expired")]
    Expired,
    /// Bad signature, bad shape or wrong algorithm.
    #[error("the access token is invalid")]
    Invalid,
}

/// Signing and verification keys.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Key of [`JwtKeys::successor_refresh_token`], derived from the secret.
    successor_key: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injected clock in `verify`, so tests control it.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            successor_key: hmac(secret, b"orderhost refresh-token successor v1").to_vec(),
        }
    }

    /// The refresh token that replaces `parent` when it is rotated: an HMAC of it under a
    /// key derived from the secret. Deterministic on purpose: a client that refreshes the
    /// same token twice within the grace window (two tabs, a retried request whose answer
    /// was lost) gets the *same* successor back, while the database still stores only
    /// hashes. Unguessable without both the parent token and the server secret.
    pub fn successor_refresh_token(&self, parent: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(&self.successor_key, parent.as_bytes()))
    }

    /// Signs claims.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Verifies a token's signature and expiry at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

/// A new random secret for development starts without one.
pub fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// A new refresh token (256 random bits, URL-safe base64).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
