//! Passwords: checked for length, hashed with Argon2id (PHC strings) off the async runtime.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use std::fmt;

/// A password as typed, valid by construction (length only: long passphrases beat rules).
#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is too short: use at least {min} characters", min = Password::MIN_CHARS)]
    TooShort,
    #[error("the password is too long: use at most {max} characters", max = Password::MAX_CHARS)]
    TooLong,
}

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(value: &str) -> Result<Self, PasswordError> {
        let chars = value.chars().count();
        if chars < Self::MIN_CHARS {
            Err(PasswordError::TooShort)
        } else if chars > Self::MAX_CHARS {
            Err(PasswordError::TooLong)
        } else {
            Ok(Password(value.to_string()))
        }
    }

    /// Argon2id with the crate's default (OWASP-recommended) cost. Takes tens of milliseconds of
    /// CPU, so it runs on the blocking pool.
    pub async fn hash(&self) -> String {
        let password = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .expect("argon2 hashing with default parameters cannot fail")
        })
        .await
        .expect("the hashing task was not cancelled")
    }

    /// Compares a typed password with a stored PHC string. A malformed stored hash never matches.
    pub async fn verify(typed: &str, stored: &str) -> bool {
        let typed = typed.to_string();
        let stored = stored.to_string();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|hash| {
                    Argon2::default()
                        .verify_password(typed.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert_eq!(
            Password::parse("short").err(),
            Some(PasswordError::TooShort)
        );
        assert_eq!(
            Password::parse(&"x".repeat(300)).err(),
            Some(PasswordError::TooLong)
        );
        assert!(Password::parse("correct horse battery").is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = Password::parse("correct horse battery")
            .unwrap()
            .hash()
            .await;
        assert!(hash.starts_with("$argon2id$"));
        assert!(Password::verify("correct horse battery", &hash).await);
        assert!(!Password::verify("wrong horse battery", &hash).await);
        assert!(!Password::verify("anything", "not a hash").await);
    }
}
