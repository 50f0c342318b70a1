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

    /// Whether `value` has the shape of a secret [`Secret::generate`] makes with `prefix`: the
    /// prefix, then 43 URL-safe base64 characters that decode to exactly 32 bytes. Every secret
    /// ever issued has it, so anything else can be refused without looking it up: junk costs no
    /// database round trip. (Only the shape is checked; a well-formed guess is still looked up.)
    pub fn could_have_been_issued(prefix: &str, value: &str) -> bool {
        let Some(encoded) = value.strip_prefix(prefix) else {
            return false;
        };
        // 43 characters carry 258 bits; the decoder refuses the two spare ones unless zero,
        // as the encoder leaves them.
        let mut bytes = [0u8; 33];
        encoded.len() == 43
            && URL_SAFE_NO_PAD
                .decode_slice(encoded, &mut bytes)
                .is_ok_and(|n| n == 32)
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

    #[test]
    fn only_secrets_of_the_issued_shape_could_have_been_issued() {
        for _ in 0..100 {
            let issued = Secret::generate("fdt_");
            assert!(Secret::could_have_been_issued("fdt_", issued.expose()));
            assert!(!Secret::could_have_been_issued("fds_", issued.expose()));
            assert!(!Secret::could_have_been_issued(
                "fdt_",
                &issued.expose()[..issued.expose().len() - 1]
            ));
        }
        assert!(!Secret::could_have_been_issued("fdt_", "fdt_nonsense"));
        assert!(!Secret::could_have_been_issued("fdt_", ""));
        let not_base64 = format!("fdt_{}", "!".repeat(43));
        assert!(!Secret::could_have_been_issued("fdt_", &not_base64));
        // The last character's two spare bits are never set by the encoder.
        let spare_bits_set = format!("fdt_{}B", "A".repeat(42));
        assert!(!Secret::could_have_been_issued("fdt_", &spare_bits_set));
        let spare_bits_clear = format!("fdt_{}E", "A".repeat(42));
        assert!(Secret::could_have_been_issued("fdt_", &spare_bits_clear));
    }
}
