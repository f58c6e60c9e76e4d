//! Join tokens: `rwt2.<ca pin>.<id>.<expiry>.<mac>`.
//!
//! - the CA pin is the SHA-256 of the cluster CA certificate (DER), base64url:
//!   the agent trusts the console only if it presents a chain to that CA, so a
//!   token can be passed around in the clear (as kubeadm's discovery hash);
//! - the id (8 random bytes, hex) names the token in `join-token --list` and
//!   `--revoke`; the console records every id it issues and refuses revoked
//!   and unknown ones;
//! - the expiry is a Unix time in seconds: any number of agents may use the
//!   token until then;
//! - the MAC is HMAC-SHA256 over the pin, id and expiry under the console's
//!   token key, so a token of another cluster, or an edited id or expiry, is
//!   refused.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

const PREFIX: &str = "rwt2";
const MAC_CONTEXT: &[u8] = b"ringwatch join token v2\0";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate.
    pub ca_pin: [u8; 32],
    /// The token's id.
    pub id: [u8; 8],
    /// Unix seconds after which the token is refused.
    pub expires_unix: u64,
    /// HMAC-SHA256 over pin and expiry.
    mac: [u8; 32],
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a token.
    #[error("not a ringwatch join token (expected rwt2.<pin>.<id>.<expiry>.<mac>): {0}")]
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
    /// Issues token `id` for the CA `ca_der`, valid until `expires_unix`.
    pub fn issue(ca_der: &[u8], token_key: &[u8], id: [u8; 8], expires_unix: u64) -> Self {
        let ca_pin = ca_pin(ca_der);
        let mac = sign(token_key, &ca_pin, &id, expires_unix);
        Self { ca_pin, id, expires_unix, mac }
    }

    /// The id as `join-token --list` prints it.
    pub fn id_hex(&self) -> String {
        to_hex(&self.id)
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
        hmac::verify(&key, &mac_input(&self.ca_pin, &self.id, self.expires_unix), &self.mac)
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
            "{PREFIX}.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.ca_pin),
            to_hex(&self.id),
            self.expires_unix,
            URL_SAFE_NO_PAD.encode(self.mac)
        )
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().split('.');
        match parts.next() {
            Some(PREFIX) => {}
            Some("rwt1") => {
                return Err(TokenError::Malformed(
                    "it is a token of an older console version; make a new one with `ringwatch join-token`",
                ));
            }
            _ => return Err(TokenError::Malformed("it does not start with rwt2.")),
        }
        let ca_pin = decode_32(parts.next(), "the CA pin is not 32 base64url bytes")?;
        let id = parts.next().and_then(decode_id).ok_or(TokenError::Malformed("the id is not 16 hex digits"))?;
        let expires_unix = parts
            .next()
            .and_then(|expiry| expiry.parse().ok())
            .ok_or(TokenError::Malformed("the expiry is not a number"))?;
        let mac = decode_32(parts.next(), "the signature is not 32 base64url bytes")?;
        if parts.next().is_some() {
            return Err(TokenError::Malformed("it has too many parts"));
        }
        Ok(Self { ca_pin, id, expires_unix, mac })
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

fn sign(token_key: &[u8], ca_pin: &[u8; 32], id: &[u8; 8], expires_unix: u64) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token_key);
    let tag = hmac::sign(&key, &mac_input(ca_pin, id, expires_unix));
    let mut mac = [0; 32];
    mac.copy_from_slice(tag.as_ref());
    mac
}

fn mac_input(ca_pin: &[u8; 32], id: &[u8; 8], expires_unix: u64) -> Vec<u8> {
    [MAC_CONTEXT, ca_pin, id, &expires_unix.to_be_bytes()].concat()
}

/// Parses a token id: 16 lowercase hex digits.
pub fn decode_id(text: &str) -> Option<[u8; 8]> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut id = [0u8; 8];
    for (byte, pair) in id.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id)
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
    const ID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 0xab];

    #[test]
    fn a_fresh_token_round_trips_and_verifies() {
        let token = JoinToken::issue(CA, KEY, ID, 2_000);
        let parsed: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.verify(CA, KEY, 1_000), Ok(()));
        assert!(parsed.pins(CA));
    }

    #[test]
    fn a_token_of_another_cluster_is_refused() {
        let token = JoinToken::issue(b"another CA", KEY, ID, 2_000);
        assert_eq!(token.verify(CA, KEY, 1_000), Err(TokenError::ForeignCluster));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = JoinToken::issue(CA, b"another key", ID, 2_000);
        assert_eq!(token.verify(CA, KEY, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn an_edited_expiry_is_refused() {
        let token = JoinToken::issue(CA, KEY, ID, 2_000);
        let text = token.to_string().replace(".2000.", ".9999.");
        let edited: JoinToken = text.parse().unwrap();
        assert_eq!(edited.verify(CA, KEY, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn an_edited_id_is_refused() {
        let token = JoinToken::issue(CA, KEY, ID, 2_000);
        let text = token.to_string().replace(&token.id_hex(), "0000000000000000");
        let edited: JoinToken = text.parse().unwrap();
        assert_eq!(edited.verify(CA, KEY, 1_000), Err(TokenError::BadSignature));
        assert_eq!(decode_id(&token.id_hex()), Some(ID));
        assert_eq!(decode_id("ABCDEF0123456789"), None);
    }

    #[test]
    fn an_expired_token_is_refused_with_its_age() {
        let token = JoinToken::issue(CA, KEY, ID, 2_000);
        assert_eq!(token.verify(CA, KEY, 2_000), Ok(()));
        assert_eq!(token.verify(CA, KEY, 2_030), Err(TokenError::Expired { ago_secs: 30 }));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for bad in ["", "rwt3.a.1.b", "rwt1", "rwt2", "rwt2.AAAA.1.AAAA", "rwt2.x.y.z.w.v", "rwt1.a.b.c"] {
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
