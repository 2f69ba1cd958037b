//! Password hashing: argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane),
//! always on the blocking pool so a login never stalls the async executor.

use std::sync::OnceLock;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Shortest password accepted at registration.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted: bounds the hashing work an attacker can ask for.
pub const MAX_PASSWORD_LEN: usize = 128;

fn hasher() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
    let params = Params::new(19_456, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// Checks a password against a PHC string. `None` as the hash still does the work of a
/// verification, so an unknown account takes as long to reject as a wrong password.
pub async fn verify(password: String, phc: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let phc = phc.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed =
            PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        Ok(hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(b"no such account: this hash only burns time", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}
