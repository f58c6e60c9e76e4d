//! Join tokens: `rwt1.<ca pin>.<expiry>.<mac>`.
//!
//! - the CA pin is the SHA-256 of the cluster CA certificate (DER), base64url:
//!   the agent trusts the console only if it presents a chain to that CA, so a
//!   token can be passed around in the clear (as kubeadm's discovery hash);
//! - the expiry is a Unix time in seconds: any number of agents may use the
//!   token until then;
//! - the MAC is HMAC-SHA256 over the pin and expiry under the console's token
//!   key, so the console verifies a token without storing it, and a token of
//!   another cluster or an edited expiry is refused.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

const PREFIX: &str = "rwt1";
const MAC_CONTEXT: &[u8] = b"ringwatch join token v1\0";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate.
    pub ca_pin: [u8; 32],
    /// Unix seconds after which the token is refused.
    pub expires_unix: u64,
    /// HMAC-SHA256 over pin and expiry.
    mac: [u8; 32],
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a token.
    #[error("not a ringwatch join token (expected rwt1.<pin>.<expiry>.<mac>): {0}")]
    Malformed(&'static str),
    /// The token pins another CA.
    #[error("the token belongs to another cluster (its CA pin does not match this console's CA)")]
    ForeignCluster,
    /// The MAC does not verify.
    #[error("the token's signature does not verify: it was not issued by this console, or was altered")]
    BadSignature,
    /// The token expired.
    #[error("the token expired {ago_secs} s ago; make a new one with `ringwatch join-token`")]
    Expired {
        /// Seconds since expiry.
        ago_secs: u64,
    },
}

impl JoinToken {
    /// Issues a token for the CA `ca_der`, valid until `expires_unix`.
    pub fn issue(ca_der: &[u8], token_key: &[u8], expires_unix: u64) -> Self {
        let ca_pin = ca_pin(ca_der);
        let mac = sign(token_key, &ca_pin, expires_unix);
        Self { ca_pin, expires_unix, mac }
    }

    /// Checks the token against this console's CA and key at `now_unix`.
    ///
    /// # Errors
    /// The [`TokenError`] that explains the refusal.
    pub fn verify(&self, ca_der: &[u8], token_key: &[u8], now_unix: u64) -> Result<(), TokenError> {
        if self.ca_pin != ca_pin(ca_der) {
            return Err(TokenError::ForeignCluster);
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, token_key);
        hmac::verify(&key, &mac_input(&self.ca_pin, self.expires_unix), &self.mac)
            .map_err(|_| TokenError::BadSignature)?;
        if now_unix > self.expires_unix {
            return Err(TokenError::Expired { ago_secs: now_unix - self.expires_unix });
        }
        Ok(())
    }

    /// Whether `ca_der` is the CA this token pins.
    pub fn pins(&self, ca_der: &[u8]) -> bool {
        self.ca_pin == ca_pin(ca_der)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.ca_pin),
            self.expires_unix,
            URL_SAFE_NO_PAD.encode(self.mac)
        )
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(TokenError::Malformed("it does not start with rwt1."));
        }
        let ca_pin = decode_32(parts.next(), "the CA pin is not 32 base64url bytes")?;
        let expires_unix = parts
            .next()
            .and_then(|expiry| expiry.parse().ok())
            .ok_or(TokenError::Malformed("the expiry is not a number"))?;
        let mac = decode_32(parts.next(), "the signature is not 32 base64url bytes")?;
        if parts.next().is_some() {
            return Err(TokenError::Malformed("it has too many parts"));
        }
        Ok(Self { ca_pin, expires_unix, mac })
    }
}

/// SHA-256 of a certificate (DER): the CA pin, and the fingerprint by which
/// the console knows the credentials it issued.
pub fn ca_pin(der: &[u8]) -> [u8; 32] {
    fingerprint(der)
}

/// SHA-256 of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// A fingerprint as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sign(token_key: &[u8], ca_pin: &[u8; 32], expires_unix: u64) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token_key);
    let tag = hmac::sign(&key, &mac_input(ca_pin, expires_unix));
    let mut mac = [0; 32];
    mac.copy_from_slice(tag.as_ref());
    mac
}

fn mac_input(ca_pin: &[u8; 32], expires_unix: u64) -> Vec<u8> {
    [MAC_CONTEXT, ca_pin, &expires_unix.to_be_bytes()].concat()
}

fn decode_32(part: Option<&str>, problem: &'static str) -> Result<[u8; 32], TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.unwrap_or_default()).map_err(|_| TokenError::Malformed(problem))?;
    bytes.try_into().map_err(|_| TokenError::Malformed(problem))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CA: &[u8] = b"pretend this is a CA certificate";
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_fresh_token_round_trips_and_verifies() {
        let token = JoinToken::issue(CA, KEY, 2_000);
        let parsed: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.verify(CA, KEY, 1_000), Ok(()));
        assert!(parsed.pins(CA));
    }

    #[test]
    fn a_token_of_another_cluster_is_refused() {
        let token = JoinToken::issue(b"another CA", KEY, 2_000);
        assert_eq!(token.verify(CA, KEY, 1_000), Err(TokenError::ForeignCluster));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = JoinToken::issue(CA, b"another key", 2_000);
        assert_eq!(token.verify(CA, KEY, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn an_edited_expiry_is_refused() {
        let token = JoinToken::issue(CA, KEY, 2_000);
        let text = token.to_string().replace(".2000.", ".9999.");
        let edited: JoinToken = text.parse().unwrap();
        assert_eq!(edited.verify(CA, KEY, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn an_expired_token_is_refused_with_its_age() {
        let token = JoinToken::issue(CA, KEY, 2_000);
        assert_eq!(token.verify(CA, KEY, 2_000), Ok(()));
        assert_eq!(token.verify(CA, KEY, 2_030), Err(TokenError::Expired { ago_secs: 30 }));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for bad in ["", "rwt2.a.1.b", "rwt1", "rwt1.AAAA.1.AAAA", "rwt1.x.y.z.w"] {
            assert!(matches!(bad.parse::<JoinToken>(), Err(TokenError::Malformed(_))), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = text.parse::<JoinToken>();
        }
    }
}
