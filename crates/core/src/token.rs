//! API tokens that intake mints (`intake token create`, `POST /api/v1/tokens`): their format
//! and their hash.
//!
//! A minted token is `itk_` followed by 43 characters of URL-safe base64 encoding 32 random
//! bytes (256 bits). The prefix lets secret scanners recognise a leaked token. Only the
//! SHA-256 of a token is stored; the plaintext is shown once, when it is created.
//!
//! Why a fast hash is enough: password hashes are slow (argon2, bcrypt) because passwords are
//! guessable, and slowness makes each guess expensive. A minted token is 256 uniformly random
//! bits: nobody can enumerate them, so a stolen table of SHA-256 digests gives no way back to
//! a token, however fast the hash. A fast hash also lets every request be checked against the
//! store without a per-request CPU cost an attacker could exploit.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix of every minted token.
pub const PREFIX: &str = "itk_";

/// A new random token (`itk_…`, 256 bits of entropy).
pub fn mint() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a token: the lowercase hex SHA-256 of its text.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of a minted token (worth looking up in the store).
pub fn is_minted(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_prefixed_distinct_and_recognised() {
        let a = mint();
        let b = mint();
        assert_ne!(a, b);
        assert!(a.starts_with("itk_"));
        assert!(is_minted(&a) && is_minted(&b));
        for not in [
            "",
            "itk_",
            "itk_short",
            "adm-secret",
            &format!("{a}x"),
            &a.replace("itk_", "xyz_"),
        ] {
            assert!(!is_minted(not), "{not}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex_and_never_the_token() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = mint();
        assert_eq!(hash(&t), hash(&t));
        assert_ne!(hash(&t), t);
        assert_eq!(hash(&t).len(), 64);
    }
}
