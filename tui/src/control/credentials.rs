//! The credentials the console issued, by certificate fingerprint and by
//! node name (ARCHITECTURE.md, "Identity").
//!
//! Every hello looks up its certificate, and the rules of [`crate::control::registry`]
//! then look at the other credentials of the same node (a renewal's
//! predecessor to retire, a name's owner). Found by scanning every record,
//! that made each hello cost a pass over the whole fleet: at 10,000 agents
//! reconnecting at once, seconds of the owner's time in which heartbeats
//! waited (BENCHMARKS.md, "The console at scale"). The index by name keeps
//! those look-ups to the node's own few records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ringwatch_shared::names::NodeName;

use crate::control::records::CredentialRecord;

/// Credential records, indexed by certificate fingerprint (hex) and by
/// node name. The name of a record never changes once inserted (only its
/// flags do), so the name index is kept by [`Self::insert`] and
/// [`Self::remove`] alone.
#[derive(Debug, Default)]
pub struct Credentials {
    by_fingerprint: BTreeMap<String, CredentialRecord>,
    by_name: HashMap<NodeName, BTreeSet<String>>,
}

impl Credentials {
    /// The records of `records`, indexed.
    pub fn new(records: &BTreeMap<String, CredentialRecord>) -> Self {
        let mut credentials = Self::default();
        for (fingerprint, record) in records {
            credentials.insert(fingerprint.clone(), record.clone());
        }
        credentials
    }

    /// The record of the certificate with `fingerprint`.
    pub fn get(&self, fingerprint: &str) -> Option<&CredentialRecord> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Records `record` for the certificate with `fingerprint`, replacing
    /// what was recorded for it.
    pub fn insert(&mut self, fingerprint: String, record: CredentialRecord) {
        if let Some(old) = self.by_fingerprint.get(&fingerprint)
            && old.name != record.name
        {
            self.unindex(&old.name.clone(), &fingerprint);
        }
        self.by_name.entry(record.name.clone()).or_default().insert(fingerprint.clone());
        self.by_fingerprint.insert(fingerprint, record);
    }

    /// Removes the record of the certificate with `fingerprint`.
    pub fn remove(&mut self, fingerprint: &str) -> Option<CredentialRecord> {
        let record = self.by_fingerprint.remove(fingerprint)?;
        self.unindex(&record.name, fingerprint);
        Some(record)
    }

    fn unindex(&mut self, name: &NodeName, fingerprint: &str) {
        if let Some(fingerprints) = self.by_name.get_mut(name) {
            fingerprints.remove(fingerprint);
            if fingerprints.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// The records of node `name`, by fingerprint.
    pub fn of_node<'a>(&'a self, name: &str) -> impl Iterator<Item = (&'a String, &'a CredentialRecord)> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|fingerprint| self.by_fingerprint.get_key_value(fingerprint))
    }

    /// The fingerprints of node `name`'s records.
    pub fn fingerprints_of(&self, name: &str) -> Vec<String> {
        self.by_name.get(name).map(|fingerprints| fingerprints.iter().cloned().collect()).unwrap_or_default()
    }

    /// The record of `fingerprint`, to change its flags (never its name).
    pub fn flags_mut(&mut self, fingerprint: &str) -> Option<&mut CredentialRecord> {
        self.by_fingerprint.get_mut(fingerprint)
    }

    /// Whether any credential was ever recorded for `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Every record, by fingerprint.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &CredentialRecord)> {
        self.by_fingerprint.iter()
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = &CredentialRecord> {
        self.by_fingerprint.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> CredentialRecord {
        CredentialRecord {
            name: NodeName::parse(name).unwrap(),
            key_fingerprint: format!("key-{name}"),
            issued_unix: 1,
            revoked: false,
            token_id: None,
            expires_unix: None,
            renewed_to: None,
        }
    }

    fn names_of(credentials: &Credentials, name: &str) -> Vec<String> {
        credentials.of_node(name).map(|(fingerprint, _)| fingerprint.clone()).collect()
    }

    #[test]
    fn the_name_index_follows_inserts_replacements_and_removals() {
        let mut credentials = Credentials::default();
        credentials.insert("c1".into(), record("a"));
        credentials.insert("c2".into(), record("a"));
        credentials.insert("c3".into(), record("b"));
        assert_eq!(names_of(&credentials, "a"), ["c1", "c2"]);
        assert_eq!(names_of(&credentials, "b"), ["c3"]);
        // A record replaced under another name moves in the index.
        credentials.insert("c2".into(), record("b"));
        assert_eq!(names_of(&credentials, "a"), ["c1"]);
        assert_eq!(names_of(&credentials, "b"), ["c2", "c3"]);
        assert!(credentials.remove("c1").is_some());
        assert!(!credentials.knows("a"), "a name with no record left is forgotten");
        assert!(credentials.remove("c1").is_none());
        assert_eq!(credentials.fingerprints_of("b"), ["c2", "c3"]);
        assert_eq!(credentials.iter().count(), 2);
    }

    #[test]
    fn an_image_is_indexed_whole() {
        let image: BTreeMap<String, CredentialRecord> =
            [("x".to_string(), record("a")), ("y".to_string(), record("b"))].into_iter().collect();
        let credentials = Credentials::new(&image);
        assert_eq!(names_of(&credentials, "a"), ["x"]);
        assert_eq!(names_of(&credentials, "b"), ["y"]);
        assert!(credentials.knows("b") && !credentials.knows("c"));
    }
}
