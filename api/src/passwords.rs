//! People's passwords for the console: argon2id (RustCrypto's `argon2`, OWASP's parameters:
//! 19 MiB, 2 passes, 1 lane), stored as PHC strings by `caseflow_engine::service::accounts`.
//! Hashing takes tens of milliseconds on purpose: callers on the runtime run it on the
//! blocking pool.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The shortest password accepted. Length is what makes a password hard to guess; no
/// composition rules (NIST SP 800-63B).
pub const MIN_CHARS: usize = 10;
/// argon2 takes any length; a cap keeps a request from making the server hash megabytes.
pub const MAX_BYTES: usize = 1024;

/// Why a new password is refused, as a sentence for the person.
pub fn refusal(user: &str, password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Some(format!("a password needs at least {MIN_CHARS} characters ({chars} given)"));
    }
    if password.len() > MAX_BYTES {
        return Some(format!("a password may have at most {MAX_BYTES} bytes"));
    }
    if password.trim() != password {
        return Some("a password may not begin or end with a space".into());
    }
    if password.eq_ignore_ascii_case(user) {
        return Some("a password may not be the user name".into());
    }
    None
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any input up to 4 GiB")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`. A record that does not parse matches
/// nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user has no password or does not exist, so that the
/// answer takes as long as for a real user and says nothing about who exists.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("caseflow decoy password, matches nothing typed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_argon2id() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a phc string"));
        assert_ne!(hash("correct horse battery"), h, "a fresh salt each time");
    }

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        assert!(refusal("li_na", "short").unwrap().contains("at least 10"));
        assert!(refusal("li_na", " ten chars ok").unwrap().contains("space"));
        assert!(refusal("zhang_wei_1", "ZHANG_WEI_1").unwrap().contains("user name"));
        assert!(refusal("li_na", &"x".repeat(MAX_BYTES + 1)).unwrap().contains("at most"));
        assert_eq!(refusal("li_na", "长城长城长城长城长城"), None, "characters, not bytes");
    }
}
