//! The operator credentials every admin connection is checked against
//! (README.md, "Operating ringwatch"), shared between whoever holds the
//! records — the owner while this console leads, the store watcher while it
//! stands by — and the connection handlers, which must not wait for either.
//!
//! It also knows the open connections of each credential, so that a
//! revocation ends them at once rather than at their next request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use ringwatch_shared::protocol::{OperatorRole, RefusalKind};

use crate::control::pki::unix_now;
use crate::control::records::OperatorRecord;

/// Who an operator connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The credential's name.
    pub name: String,
    /// What it may do.
    pub role: OperatorRole,
    /// SHA-256 (hex) of its certificate.
    pub fingerprint: String,
}

/// What a presented operator certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not an operator credential (an agent's, perhaps).
    Unknown,
    /// A valid operator credential.
    Valid(Operator),
    /// Revoked or expired: refused, with the sentence saying why.
    Refused(String),
}

/// The directory.
#[derive(Debug, Default)]
pub struct OperatorDirectory {
    /// Credentials by certificate fingerprint (hex).
    records: RwLock<HashMap<String, OperatorRecord>>,
    /// Open connections by certificate fingerprint.
    open: Mutex<HashMap<String, Vec<quinn::Connection>>>,
}

impl OperatorDirectory {
    /// Replaces every record with `records` (at start, or from the store),
    /// closing the connections of those now revoked.
    pub fn replace<'a>(&self, records: impl IntoIterator<Item = &'a OperatorRecord>) {
        let records: HashMap<String, OperatorRecord> =
            records.into_iter().map(|record| (record.fingerprint.clone(), record.clone())).collect();
        let revoked: Vec<OperatorRecord> = records.values().filter(|record| record.revoked).cloned().collect();
        *self.records.write().unwrap_or_else(PoisonError::into_inner) = records;
        for record in &revoked {
            self.close_connections(record);
        }
    }

    /// Adds or updates one record; a revoked one's connections are closed.
    pub fn update(&self, record: &OperatorRecord) {
        self.records.write().unwrap_or_else(PoisonError::into_inner).insert(record.fingerprint.clone(), record.clone());
        if record.revoked {
            self.close_connections(record);
        }
    }

    /// What the certificate with `fingerprint` is, now.
    pub fn check(&self, fingerprint: &str) -> Verdict {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        match records.get(fingerprint) {
            None => Verdict::Unknown,
            Some(record) if record.revoked => Verdict::Refused(format!(
                "the credential \"{}\" was revoked: ask an admin for a new one (`ringwatch credential issue`)",
                record.name
            )),
            Some(record) if record.expires_unix <= unix_now() => Verdict::Refused(format!(
                "the credential \"{}\" expired: ask an admin for a new one (`ringwatch credential issue`)",
                record.name
            )),
            Some(record) => Verdict::Valid(Operator {
                name: record.name.clone(),
                role: record.role,
                fingerprint: record.fingerprint.clone(),
            }),
        }
    }

    /// Remembers an open connection of `operator`, until [`Self::closed`].
    pub fn opened(&self, operator: &Operator, connection: &quinn::Connection) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.entry(operator.fingerprint.clone()).or_default().push(connection.clone());
    }

    /// Forgets a connection that ended.
    pub fn closed(&self, operator: &Operator, connection: &quinn::Connection) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = open.get_mut(&operator.fingerprint) {
            list.retain(|held| held.stable_id() != connection.stable_id());
            if list.is_empty() {
                open.remove(&operator.fingerprint);
            }
        }
    }

    /// How many connections are open, for tests and metrics.
    pub fn open_connections(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).values().map(Vec::len).sum()
    }

    fn close_connections(&self, record: &OperatorRecord) {
        let connections = self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&record.fingerprint);
        let reason = format!("the credential \"{}\" was revoked", record.name);
        for connection in connections.into_iter().flatten() {
            connection.close(RefusalKind::UnknownCredential.close_code().into(), reason.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fingerprint: &str, revoked: bool, expires_unix: u64) -> OperatorRecord {
        OperatorRecord {
            fingerprint: fingerprint.into(),
            name: format!("op-{fingerprint}"),
            role: OperatorRole::Viewer,
            issued_unix: 1,
            expires_unix,
            revoked,
        }
    }

    #[test]
    fn valid_revoked_expired_and_unknown_certificates_are_told_apart() {
        let directory = OperatorDirectory::default();
        let later = unix_now() + 3_600;
        directory.replace([&record("aa", false, later), &record("bb", true, later), &record("cc", false, 1)]);
        assert!(matches!(directory.check("aa"), Verdict::Valid(Operator { role: OperatorRole::Viewer, .. })));
        assert!(matches!(directory.check("bb"), Verdict::Refused(why) if why.contains("revoked")));
        assert!(matches!(directory.check("cc"), Verdict::Refused(why) if why.contains("expired")));
        assert_eq!(directory.check("dd"), Verdict::Unknown);
        directory.update(&record("aa", true, later));
        assert!(matches!(directory.check("aa"), Verdict::Refused(_)), "a revocation applies at once");
    }
}
