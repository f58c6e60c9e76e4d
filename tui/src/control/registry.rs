//! Who may connect: the credentials the console issued and the join tokens
//! it handed out (ARCHITECTURE.md, "Identity").
//!
//! Pure state over durable records. The owner consults it for every hello
//! and join; `ringwatch join-token` uses it directly on the store when no
//! console runs. The rules:
//! - a node name belongs to the key that first joined under it, as long as
//!   a credential for that name is unrevoked: a join under the name with
//!   another key is refused, and `ringwatch revoke NODE` frees the name;
//! - a renewal (README.md, "Certificates") records the new certificate for
//!   the agent's new key; the old one stays valid until it expires or the
//!   agent connects with the new one, when its record is removed, and from
//!   then on the name belongs to the new key;
//! - an expired credential is refused: the agent joins again with a token;
//! - a join token is accepted only if the console recorded its id and it is
//!   not revoked (its MAC and expiry are checked before, by the PKI);
//! - a revoked node does not join again with the token it used;
//! - tokens live at most [`MAX_TOKEN_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{CredentialInfo, OperatorRole, Refusal, RefusalKind, TokenInfo};

use ringwatch_shared::token::{fingerprint, to_hex};

use crate::control::credentials::Credentials;
use crate::control::pki::{ClusterPki, IssuedCert};
use crate::control::records::{Change, CredentialRecord, Image, OperatorRecord, TokenRecord};

/// The longest a join token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Credentials and tokens.
#[derive(Debug, Default)]
pub struct Registry {
    /// Issued credentials by certificate fingerprint (hex) and node name.
    credentials: Credentials,
    /// Issued tokens by id.
    tokens: BTreeMap<String, TokenRecord>,
    /// Operator credentials by certificate fingerprint (hex).
    operators: BTreeMap<String, OperatorRecord>,
    /// Records changed since the change log took them.
    changes: Vec<Change>,
}

/// A token just issued: its text for the operator.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token, as agents take it.
    pub text: String,
    /// Its id.
    pub id: String,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
}

impl Registry {
    /// The registry of the records in `image`.
    pub fn from_image(image: &Image) -> Self {
        Self {
            credentials: Credentials::new(&image.credentials),
            tokens: image.tokens.clone(),
            operators: image.operators.clone(),
            changes: Vec::new(),
        }
    }

    /// The changed records, for the change log.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// The node and key of the agent presenting the certificate with
    /// `cert_fingerprint` at `now_unix`. A renewed certificate in use
    /// retires the ones it renewed (their records are removed).
    ///
    /// # Errors
    /// A refusal for an unknown, revoked or expired credential.
    pub fn identify(&mut self, cert_fingerprint: &str, now_unix: u64) -> Result<(NodeName, String), Refusal> {
        let unknown = |reason: String| Refusal { kind: RefusalKind::UnknownCredential, reason };
        match self.credentials.get(cert_fingerprint) {
            Some(record) if record.revoked => {
                Err(unknown(format!("the credential of node \"{}\" was revoked: join again with a new token", record.name)))
            }
            Some(record) if record.expires_unix.is_some_and(|expires| expires < now_unix) => Err(unknown(format!(
                "the certificate of node \"{}\" expired at {}: it was not renewed in time; join the agent again with a token from `ringwatch join-token` (it keeps its name and key)",
                record.name,
                ringwatch_net::cert::format_unix(record.expires_unix.unwrap_or_default())
            ))),
            Some(record) => {
                let (name, key) = (record.name.clone(), record.key_fingerprint.clone());
                self.retire_renewed(&name, cert_fingerprint);
                Ok((name, key))
            }
            None => Err(unknown(
                "this certificate was not issued by this console (or the console lost its state): re-join with a token and a fresh data dir"
                    .into(),
            )),
        }
    }

    /// Removes the records of `name` that were renewed, now that the agent
    /// connects with `in_use`.
    fn retire_renewed(&mut self, name: &NodeName, in_use: &str) {
        let retired: Vec<String> = self
            .credentials
            .of_node(name.as_str())
            .filter(|(fingerprint, record)| {
                !record.revoked && record.renewed_to.is_some() && fingerprint.as_str() != in_use
            })
            .map(|(fingerprint, _)| fingerprint.clone())
            .collect();
        for fingerprint in retired {
            self.credentials.remove(&fingerprint);
            self.changes.push(Change::CredentialRemoved(fingerprint));
        }
    }

    /// Whether the agent of node `name`, connected with the certificate
    /// `cert_fingerprint`, may renew it at `now_unix`: the credential must
    /// be its own, valid, and not renewed in the last `min_interval`
    /// (a renewal costs a signature and a durable write).
    ///
    /// # Errors
    /// A sentence for the agent's log.
    pub fn check_renewal(
        &self,
        name: &NodeName,
        cert_fingerprint: &str,
        now_unix: u64,
        min_interval: Duration,
    ) -> Result<(), String> {
        match self.credentials.get(cert_fingerprint) {
            Some(record) if record.name == *name && !record.revoked => {}
            _ => return Err(format!("the certificate of this connection is no valid credential of node \"{name}\"")),
        }
        let latest = self
            .credentials
            .of_node(name.as_str())
            .map(|(_, record)| record)
            .filter(|record| !record.revoked)
            .map(|record| record.issued_unix)
            .max()
            .unwrap_or(0);
        if latest.saturating_add(min_interval.as_secs()) > now_unix {
            return Err(format!(
                "node \"{name}\" was issued a certificate {}s ago: renewals are at least {}s apart",
                now_unix.saturating_sub(latest),
                min_interval.as_secs()
            ));
        }
        Ok(())
    }

    /// Records the certificate `renewed` issued to `name` for a new key,
    /// renewing the one with `cert_fingerprint` (and any other of the
    /// node's not renewed yet), at `now_unix`.
    pub fn record_renewal(&mut self, name: &NodeName, cert_fingerprint: &str, renewed: &IssuedCert, now_unix: u64) {
        let new_fingerprint = to_hex(&fingerprint(&renewed.cert));
        let token_id = self.credentials.get(cert_fingerprint).and_then(|record| record.token_id.clone());
        for fingerprint in self.credentials.fingerprints_of(name.as_str()) {
            if let Some(record) = self.credentials.flags_mut(&fingerprint)
                && !record.revoked
                && record.renewed_to.is_none()
            {
                record.renewed_to = Some(new_fingerprint.clone());
                let record = record.clone();
                self.changes.push(Change::Credential { fingerprint, record });
            }
        }
        let record = CredentialRecord {
            name: name.clone(),
            key_fingerprint: renewed.key_fingerprint.clone(),
            issued_unix: now_unix,
            revoked: false,
            token_id,
            expires_unix: Some(renewed.expires_unix),
            renewed_to: None,
        };
        self.credentials.insert(new_fingerprint.clone(), record.clone());
        self.changes.push(Change::Credential { fingerprint: new_fingerprint, record });
    }

    /// Each node's newest unrevoked certificate: its fingerprint and expiry
    /// (for `status`).
    pub fn current_certificates(&self) -> HashMap<&str, (&str, Option<u64>)> {
        let mut newest: HashMap<&str, (&str, &CredentialRecord)> = HashMap::new();
        for (fingerprint, record) in self.credentials.iter().filter(|(_, record)| !record.revoked) {
            let entry = newest.entry(record.name.as_str()).or_insert((fingerprint, record));
            if record.renewed_to.is_none() && (entry.1.renewed_to.is_some() || record.issued_unix > entry.1.issued_unix)
            {
                *entry = (fingerprint, record);
            }
        }
        newest.into_iter().map(|(name, (fingerprint, record))| (name, (fingerprint, record.expires_unix))).collect()
    }

    /// Whether the certificate with `cert_fingerprint` is valid beyond
    /// `limit_unix`, or has no recorded expiry (issued before certificates
    /// were renewed): its agent is asked to renew it at once.
    pub fn outlives(&self, cert_fingerprint: &str, limit_unix: u64) -> bool {
        self.credentials
            .get(cert_fingerprint)
            .is_some_and(|record| record.expires_unix.is_none_or(|expires| expires > limit_unix))
    }

    /// Whether `name` may join with the key `key_fingerprint` using token
    /// `token_id` at `now_unix`.
    ///
    /// # Errors
    /// A refusal naming the rule and what the operator can do.
    pub fn check_join(
        &self,
        name: &NodeName,
        key_fingerprint: &str,
        token_id: &str,
        now_unix: u64,
    ) -> Result<(), Refusal> {
        let bad_token = |reason: String| Refusal { kind: RefusalKind::BadToken, reason };
        match self.tokens.get(token_id) {
            None => {
                return Err(bad_token(format!(
                    "join token {token_id} is not one this console issued (or the console lost its state): make a new one with `ringwatch join-token`"
                )));
            }
            Some(token) if token.revoked => {
                return Err(bad_token(format!(
                    "join token {token_id} was revoked: make a new one with `ringwatch join-token`"
                )));
            }
            Some(token) if token.expires_unix < now_unix => {
                return Err(Refusal {
                    kind: RefusalKind::TokenExpired,
                    reason: format!("join token {token_id} expired: make a new one with `ringwatch join-token`"),
                });
            }
            Some(_) => {}
        }
        let of_name: Vec<&CredentialRecord> =
            self.credentials.of_node(name.as_str()).map(|(_, record)| record).collect();
        // The name belongs to the keys of its unrevoked credentials: the
        // current one's, and while a renewal is not yet in use, the renewed
        // one's too.
        let owned_by_this_key =
            of_name.iter().any(|record| !record.revoked && record.key_fingerprint == key_fingerprint);
        for record in of_name {
            if record.revoked && record.token_id.as_deref() == Some(token_id) {
                return Err(bad_token(format!(
                    "node \"{name}\" was revoked and may not join again with the token it used ({token_id}): make a new token with `ringwatch join-token`"
                )));
            }
            if !record.revoked && !owned_by_this_key {
                return Err(Refusal {
                    kind: RefusalKind::NameTaken,
                    reason: format!(
                        "node name \"{name}\" belongs to another agent (another key joined under it): choose another --name, or, if that node is gone for good, free the name with `ringwatch revoke {name}` on the console"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Records a credential issued to `name` for the certificate with
    /// `cert_fingerprint`.
    pub fn record_join(
        &mut self,
        cert_fingerprint: String,
        name: NodeName,
        key_fingerprint: String,
        token_id: String,
        now_unix: u64,
        expires_unix: u64,
    ) {
        let record = CredentialRecord {
            name,
            key_fingerprint,
            issued_unix: now_unix,
            revoked: false,
            token_id: Some(token_id),
            expires_unix: Some(expires_unix),
            renewed_to: None,
        };
        self.credentials.insert(cert_fingerprint.clone(), record.clone());
        self.changes.push(Change::Credential { fingerprint: cert_fingerprint, record });
    }

    /// Revokes every credential of `name`; returns how many were.
    pub fn revoke_node(&mut self, name: &str) -> usize {
        let mut revoked = 0;
        for fingerprint in self.credentials.fingerprints_of(name) {
            if let Some(record) = self.credentials.flags_mut(&fingerprint)
                && !record.revoked
            {
                record.revoked = true;
                revoked += 1;
                let record = record.clone();
                self.changes.push(Change::Credential { fingerprint, record });
            }
        }
        revoked
    }

    /// Whether any credential was ever issued for `name`.
    pub fn knows_node(&self, name: &str) -> bool {
        self.credentials.knows(name)
    }

    /// Issues and records a token valid for `ttl`.
    ///
    /// # Errors
    /// When `ttl` is zero or longer than [`MAX_TOKEN_TTL`].
    pub fn issue_token(&mut self, pki: &ClusterPki, ttl: Duration, now_unix: u64) -> Result<IssuedToken, String> {
        check_ttl(ttl)?;
        let token = pki.join_token(ttl);
        let record =
            TokenRecord { id: token.id_hex(), issued_unix: now_unix, expires_unix: token.expires_unix, revoked: false };
        self.tokens.insert(record.id.clone(), record.clone());
        self.changes.push(Change::Token(record.clone()));
        Ok(IssuedToken { text: token.to_string(), id: record.id, expires_unix: record.expires_unix })
    }

    /// Every token, newest first, with the nodes that joined with it.
    pub fn list_tokens(&self) -> Vec<TokenInfo> {
        let mut tokens: Vec<TokenInfo> = self
            .tokens
            .values()
            .map(|token| TokenInfo {
                id: token.id.clone(),
                issued_unix: token.issued_unix,
                expires_unix: token.expires_unix,
                revoked: token.revoked,
                joined: self
                    .credentials
                    .records()
                    .filter(|record| record.token_id.as_deref() == Some(token.id.as_str()))
                    .map(|record| record.name.to_string())
                    .collect(),
            })
            .collect();
        tokens.sort_by(|a, b| b.issued_unix.cmp(&a.issued_unix).then_with(|| a.id.cmp(&b.id)));
        tokens
    }

    /// Revokes token `id`.
    ///
    /// # Errors
    /// When there is no such token.
    pub fn revoke_token(&mut self, id: &str) -> Result<bool, String> {
        let token = self
            .tokens
            .get_mut(id)
            .ok_or_else(|| format!("no join token with id \"{id}\" (see `ringwatch join-token --list`)"))?;
        if token.revoked {
            return Ok(false);
        }
        token.revoked = true;
        self.changes.push(Change::Token(token.clone()));
        Ok(true)
    }

    /// Checks that an operator credential named `name` may be issued: a
    /// valid name no unrevoked credential has.
    ///
    /// # Errors
    /// A sentence saying why not.
    pub fn check_operator_name(&self, name: &str) -> Result<(), String> {
        NodeName::parse(name).map_err(|err| format!("\"{name}\" is not a usable credential name: {err}"))?;
        if self.operators.values().any(|record| record.name == name && !record.revoked) {
            return Err(format!(
                "a credential named \"{name}\" exists: revoke it first (`ringwatch credential revoke {name}`) or choose another name"
            ));
        }
        Ok(())
    }

    /// Records the operator credential whose certificate was just signed.
    pub fn record_operator(&mut self, record: OperatorRecord) {
        self.operators.insert(record.fingerprint.clone(), record.clone());
        self.changes.push(Change::Operator(record));
    }

    /// Every operator credential, by name, then newest first.
    pub fn list_operators(&self) -> Vec<CredentialInfo> {
        let mut list: Vec<CredentialInfo> = self.operators.values().map(operator_info).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| b.issued_unix.cmp(&a.issued_unix)));
        list
    }

    /// Revokes the unrevoked operator credential(s) named `name`; returns
    /// the revoked records.
    ///
    /// # Errors
    /// When no credential has that name, or all that do are revoked.
    pub fn revoke_operator(&mut self, name: &str) -> Result<Vec<OperatorRecord>, String> {
        let mut revoked = Vec::new();
        for record in self.operators.values_mut().filter(|record| record.name == name && !record.revoked) {
            record.revoked = true;
            revoked.push(record.clone());
            self.changes.push(Change::Operator(record.clone()));
        }
        if revoked.is_empty() {
            return Err(if self.operators.values().any(|record| record.name == name) {
                format!("the credential \"{name}\" is already revoked")
            } else {
                format!("no credential named \"{name}\" (see `ringwatch credential list`)")
            });
        }
        Ok(revoked)
    }

    /// The operator credentials, for the connection handlers.
    pub fn operators(&self) -> impl Iterator<Item = &OperatorRecord> {
        self.operators.values()
    }

    /// Revokes every token not yet revoked; returns how many were.
    pub fn revoke_all_tokens(&mut self) -> usize {
        let mut revoked = 0;
        for token in self.tokens.values_mut().filter(|token| !token.revoked) {
            token.revoked = true;
            revoked += 1;
            self.changes.push(Change::Token(token.clone()));
        }
        revoked
    }
}

/// An operator credential as `credential list` shows it.
pub fn operator_info(record: &OperatorRecord) -> CredentialInfo {
    CredentialInfo {
        name: record.name.clone(),
        role: record.role,
        fingerprint: record.fingerprint.clone(),
        issued_unix: record.issued_unix,
        expires_unix: record.expires_unix,
        revoked: record.revoked,
    }
}

/// The longest an operator credential may live: a year; issue a new one
/// when it ends.
pub const MAX_OPERATOR_TTL: Duration = Duration::from_secs(366 * 86_400);

/// Checks an operator credential's lifetime.
///
/// # Errors
/// A sentence when it is zero or beyond [`MAX_OPERATOR_TTL`].
pub fn check_operator_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < Duration::from_secs(60) {
        return Err("a credential must live at least 1 minute".into());
    }
    if ttl > MAX_OPERATOR_TTL {
        return Err(format!(
            "a credential may live at most 366 days, not {}: use --ttl 366d or less, and issue a new one when it expires",
            in_days(ttl)
        ));
    }
    Ok(())
}

/// Who a role lets do what, in the words of a refusal.
pub fn viewer_refusal(name: &str) -> String {
    format!(
        "the credential \"{name}\" is a viewer: it may read everything and change nothing (ask an admin to run this, or for a credential with --role {})",
        OperatorRole::Admin
    )
}

/// Checks a token lifetime.
///
/// # Errors
/// A sentence when it is zero or beyond [`MAX_TOKEN_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl.is_zero() {
        return Err("a join token must live longer than 0s".into());
    }
    if ttl > MAX_TOKEN_TTL {
        return Err(format!(
            "a join token may live at most 30 days, not {}: use --ttl 30d or less, and issue a new token when it expires",
            in_days(ttl)
        ));
    }
    Ok(())
}

/// A lifetime beyond a day in days, as the limit is given: `31 days`
/// rather than humantime's `1month 13h 26m 24s` (a month of 30.44 days).
fn in_days(ttl: Duration) -> String {
    let (days, rest) = (ttl.as_secs() / 86_400, Duration::new(ttl.as_secs() % 86_400, ttl.subsec_nanos()));
    if rest.is_zero() {
        format!("{days} days")
    } else {
        format!("{days} days {}", ringwatch_shared::duration::format_duration(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> NodeName {
        NodeName::parse(text).unwrap()
    }

    fn registry_with_token() -> (Registry, tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let mut registry = Registry::default();
        let token = registry.issue_token(&pki, Duration::from_secs(3600), 1_000).unwrap();
        (registry, dir, token.id)
    }

    fn operator(fingerprint: &str, name: &str) -> OperatorRecord {
        OperatorRecord {
            fingerprint: fingerprint.into(),
            name: name.into(),
            role: OperatorRole::Viewer,
            issued_unix: 1,
            expires_unix: 2,
            revoked: false,
        }
    }

    #[test]
    fn an_operator_name_is_free_again_once_revoked_and_revocations_are_recorded() {
        let mut registry = Registry::default();
        registry.check_operator_name("alice").unwrap();
        assert!(registry.check_operator_name("bad name!").is_err());
        registry.record_operator(operator("f1", "alice"));
        assert!(registry.check_operator_name("alice").unwrap_err().contains("revoke it first"));
        let revoked = registry.revoke_operator("alice").unwrap();
        assert_eq!(revoked.len(), 1);
        assert!(registry.revoke_operator("alice").unwrap_err().contains("already revoked"));
        assert!(registry.revoke_operator("bob").unwrap_err().contains("no credential named"));
        registry.check_operator_name("alice").unwrap();
        let changes = registry.take_changes();
        assert!(matches!(changes.last(), Some(Change::Operator(record)) if record.revoked), "{changes:?}");
        assert!(registry.list_operators()[0].revoked);
    }

    #[test]
    fn operator_lifetimes_are_bounded() {
        assert!(check_operator_ttl(Duration::from_secs(30 * 86_400)).is_ok());
        assert!(check_operator_ttl(Duration::from_secs(1)).is_err());
        assert!(check_operator_ttl(Duration::from_secs(400 * 86_400)).unwrap_err().contains("366 days"));
    }

    #[test]
    fn regression_a_name_stays_with_the_key_that_joined_until_revoked() {
        // Case 7: after node "a" died, a new agent with a fresh key and the
        // still-valid token joined as "a"; the real "a" was then refused.
        let (mut registry, _dir, token) = registry_with_token();
        registry.check_join(&name("a"), "key-1", &token, 1_000).unwrap();
        registry.record_join("cert-1".into(), name("a"), "key-1".into(), token.clone(), 1_000, 1_000_000);
        let refusal = registry.check_join(&name("a"), "key-2", &token, 1_001).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::NameTaken);
        assert!(refusal.reason.contains("ringwatch revoke a"), "{}", refusal.reason);
        // The same key may join again (its certificate was lost).
        registry.check_join(&name("a"), "key-1", &token, 1_001).unwrap();
        // Revoking frees the name for another key — with another token.
        assert_eq!(registry.revoke_node("a"), 1);
        let other = {
            let dir = tempfile::tempdir().unwrap();
            let pki = ClusterPki::load_or_create(dir.path()).unwrap();
            registry.issue_token(&pki, Duration::from_secs(60), 1_002).unwrap().id
        };
        registry.check_join(&name("a"), "key-2", &other, 1_002).unwrap();
    }

    #[test]
    fn regression_a_revoked_node_does_not_join_again_with_its_token() {
        let (mut registry, _dir, token) = registry_with_token();
        registry.record_join("cert-1".into(), name("a"), "key-1".into(), token.clone(), 1_000, 1_000_000);
        registry.revoke_node("a");
        assert!(registry.identify("cert-1", 1_001).is_err());
        let refusal = registry.check_join(&name("a"), "key-1", &token, 1_001).unwrap_err();
        assert!(refusal.reason.contains("may not join again with the token it used"), "{}", refusal.reason);
        // Others may still use the token.
        registry.check_join(&name("b"), "key-9", &token, 1_001).unwrap();
    }

    #[test]
    fn tokens_are_listed_revoked_and_refused_unless_recorded() {
        let (mut registry, _dir, token) = registry_with_token();
        registry.record_join("cert-1".into(), name("a"), "key-1".into(), token.clone(), 1_000, 1_000_000);
        let listed = registry.list_tokens();
        assert_eq!((listed.len(), listed[0].joined.clone()), (1, vec!["a".to_string()]));
        assert!(registry.check_join(&name("b"), "k", "0000000000000000", 1_000).is_err(), "unrecorded id");
        assert_eq!(registry.revoke_token(&token), Ok(true));
        assert_eq!(registry.revoke_token(&token), Ok(false));
        assert!(registry.revoke_token("nope").is_err());
        let refusal = registry.check_join(&name("b"), "k", &token, 1_000).unwrap_err();
        assert!(refusal.reason.contains("revoked"), "{}", refusal.reason);
        assert!(registry.take_changes().len() >= 3);
    }

    #[test]
    fn regression_a_token_lifetime_is_at_most_thirty_days() {
        // Case 8: `--ttl 500000000000y` was accepted.
        assert!(check_ttl(Duration::from_secs(30 * 86_400)).is_ok());
        let err = check_ttl(Duration::from_secs(30 * 86_400 + 1)).unwrap_err();
        assert!(err.contains("at most 30 days, not 30 days 1s"), "{err}");
        let err = check_ttl(Duration::from_secs(31 * 86_400)).unwrap_err();
        assert!(err.contains("not 31 days:"), "{err}");
        assert!(check_ttl(Duration::ZERO).is_err());
    }

    fn issued(cert: &[u8], key: &str, expires_unix: u64) -> IssuedCert {
        IssuedCert {
            cert: rustls::pki_types::CertificateDer::from(cert.to_vec()),
            key_fingerprint: key.into(),
            expires_unix,
        }
    }

    #[test]
    fn a_renewal_is_recorded_and_the_old_credential_retires_when_the_new_one_connects() {
        let (mut registry, _dir, token) = registry_with_token();
        let a = name("a");
        registry.record_join("cert-1".into(), a.clone(), "key-1".into(), token.clone(), 1_000, 1_030);
        let interval = Duration::from_secs(3);
        let err = registry.check_renewal(&a, "cert-1", 1_001, interval).unwrap_err();
        assert!(err.contains("renewals are at least 3s apart"), "{err}");
        registry.check_renewal(&a, "cert-1", 1_020, interval).unwrap();
        assert!(registry.check_renewal(&name("b"), "cert-1", 1_020, interval).is_err(), "only its own credential");
        registry.take_changes();

        let renewed = issued(b"new certificate", "key-2", 1_050);
        let new_fingerprint = to_hex(&fingerprint(&renewed.cert));
        registry.record_renewal(&a, "cert-1", &renewed, 1_020);
        let changes = registry.take_changes();
        assert_eq!(changes.len(), 2, "the old record names its renewal, the new one is written: {changes:?}");
        assert_eq!(registry.current_certificates()["a"], (new_fingerprint.as_str(), Some(1_050)));
        assert_eq!(registry.credentials.get(&new_fingerprint).unwrap().token_id.as_deref(), Some(token.as_str()));

        // The old certificate stays valid on the live connection and the
        // next one, until the agent connects with the new one.
        assert_eq!(registry.identify("cert-1", 1_021).unwrap().1, "key-1");
        assert!(registry.take_changes().is_empty());
        assert_eq!(registry.identify(&new_fingerprint, 1_022).unwrap(), (a.clone(), "key-2".to_string()));
        assert_eq!(registry.take_changes(), vec![Change::CredentialRemoved("cert-1".into())]);
        assert!(registry.identify("cert-1", 1_023).is_err(), "retired");

        // The name now belongs to the new key; revocation covers it.
        registry.check_join(&a, "key-2", &token, 1_023).unwrap();
        assert_eq!(registry.check_join(&a, "key-1", &token, 1_023).unwrap_err().kind, RefusalKind::NameTaken);
        assert_eq!(registry.revoke_node("a"), 1);
        assert!(registry.identify(&new_fingerprint, 1_024).is_err());
    }

    #[test]
    fn certificates_outliving_the_lifetime_are_renewed_at_once() {
        let (mut registry, _dir, token) = registry_with_token();
        registry.record_join("cert-1".into(), name("a"), "key-1".into(), token.clone(), 1_000, 1_030);
        assert!(!registry.outlives("cert-1", 1_033));
        assert!(registry.outlives("cert-1", 1_029), "issued under a longer lifetime");
        let mut legacy = registry.credentials.get("cert-1").unwrap().clone();
        legacy.expires_unix = None;
        registry.credentials.insert("cert-0".into(), legacy);
        assert!(registry.outlives("cert-0", u64::MAX), "issued before certificates were renewed");
        assert!(!registry.outlives("unknown", 0));
    }

    #[test]
    fn while_a_renewal_is_unused_both_keys_own_the_name() {
        let (mut registry, _dir, token) = registry_with_token();
        let a = name("a");
        registry.record_join("cert-1".into(), a.clone(), "key-1".into(), token.clone(), 1_000, 1_030);
        registry.record_renewal(&a, "cert-1", &issued(b"renewed", "key-2", 1_050), 1_020);
        // The agent may have crashed before storing the renewal: its old key
        // still joins again; a stranger's does not.
        registry.check_join(&a, "key-1", &token, 1_021).unwrap();
        registry.check_join(&a, "key-2", &token, 1_021).unwrap();
        assert_eq!(registry.check_join(&a, "key-3", &token, 1_021).unwrap_err().kind, RefusalKind::NameTaken);
    }

    #[test]
    fn regression_an_expired_credential_is_refused_saying_to_join_again() {
        let (mut registry, _dir, token) = registry_with_token();
        registry.record_join("cert-1".into(), name("a"), "key-1".into(), token.clone(), 1_000, 1_030);
        assert!(registry.identify("cert-1", 1_030).is_ok());
        let refusal = registry.identify("cert-1", 1_031).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::UnknownCredential);
        assert!(refusal.reason.contains("expired at 1970-01-01 00:17:10 UTC"), "{}", refusal.reason);
        assert!(refusal.reason.contains("join the agent again with a token"), "{}", refusal.reason);
        // It joins again with its key and a token.
        registry.check_join(&name("a"), "key-1", &token, 1_031).unwrap();
    }
}
