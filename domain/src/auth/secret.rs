//! Random bearer secrets (session cookies, API tokens, setup links) and their stored hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// A secret a client holds. Only its SHA-256 is stored; it is compared by looking the hash up.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// 32 random bytes from the OS generator, URL-safe, with a prefix saying what it is for
    /// (`fds_` session, `fdt_` API token, `fdl_` setup link) so a leaked one is recognisable.
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Secret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn from_client(value: &str) -> Self {
        Secret(value.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_distinct_prefixed_and_never_debug_printed() {
        let a = Secret::generate("fdt_");
        let b = Secret::generate("fdt_");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("fdt_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_eq!(format!("{a:?}"), "Secret(..)");
        assert_eq!(a.hash(), Secret::from_client(a.expose()).hash());
    }
}
