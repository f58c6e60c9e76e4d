//! Consistency levels, and what a read of several replicas returns.
//!
//! A write at `quorum` is acknowledged once a majority of the object's
//! replicas hold it durably; a read at `quorum` asks a majority and takes
//! the newest version any of them holds. Two majorities of the same replica
//! set share a node, so a quorum read never returns a version older than a
//! write acknowledged at quorum before the read started. `one` trades that
//! for availability; `all` needs every replica.

use serde::{Deserialize, Serialize};

use crate::data::ObjectMeta;

/// How many replicas must answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// One replica.
    One,
    /// A majority of the replicas.
    #[default]
    Quorum,
    /// Every replica.
    All,
}

impl Consistency {
    /// Answers needed from an object's `replicas` copies (at least 1).
    pub fn required(self, replicas: usize) -> usize {
        let replicas = replicas.max(1);
        match self {
            Self::One => 1,
            Self::Quorum => replicas / 2 + 1,
            Self::All => replicas,
        }
    }

    /// The lowercase name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Quorum => "quorum",
            Self::All => "all",
        }
    }
}

/// One replica's answer to a read: what it holds of the key (`None`:
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAnswer<N> {
    /// The replica.
    pub node: N,
    /// What it holds.
    pub held: Option<ObjectMeta>,
}

/// What a read concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome<N> {
    /// Fewer replicas answered than the consistency needs: `answered` of
    /// `required`.
    NotEnough {
        /// Answers received.
        answered: usize,
        /// Answers needed.
        required: usize,
    },
    /// The newest version is a tombstone, or no replica has the key.
    NotFound {
        /// Replicas to send the tombstone to (read repair).
        repair: Vec<N>,
    },
    /// The object: read it from `from`.
    Found {
        /// The newest version's metadata.
        meta: ObjectMeta,
        /// A replica holding it.
        from: N,
        /// Replicas that answered with an older copy or none: they get the
        /// newest (read repair).
        repair: Vec<N>,
    },
}

/// The outcome of a read that got `answers` from an object's `replicas`
/// copies at `consistency`.
pub fn resolve<N: Clone>(answers: &[ReplicaAnswer<N>], replicas: usize, consistency: Consistency) -> ReadOutcome<N> {
    let required = consistency.required(replicas);
    if answers.len() < required {
        return ReadOutcome::NotEnough { answered: answers.len(), required };
    }
    let newest = answers
        .iter()
        .filter_map(|answer| answer.held.as_ref().map(|meta| (answer, meta)))
        .max_by_key(|(_, meta)| meta.version);
    let Some((holder, meta)) = newest else {
        return ReadOutcome::NotFound { repair: Vec::new() };
    };
    let repair = answers
        .iter()
        .filter(|answer| answer.held.as_ref().is_none_or(|held| held.version < meta.version))
        .map(|answer| answer.node.clone())
        .collect();
    if meta.tombstone {
        // Only those that hold an older live copy need the tombstone.
        let repair = answers
            .iter()
            .filter(|answer| answer.held.as_ref().is_some_and(|held| held.version < meta.version))
            .map(|answer| answer.node.clone())
            .collect();
        return ReadOutcome::NotFound { repair };
    }
    ReadOutcome::Found { meta: meta.clone(), from: holder.node.clone(), repair }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ObjectKey, Version};

    fn meta(counter: u64, tombstone: bool) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse("k").unwrap(),
            version: Version { term: 0, counter },
            size: if tombstone { 0 } else { 3 },
            checksum: if tombstone { String::new() } else { format!("c{counter}") },
            tombstone,
        }
    }

    fn answer(node: &str, held: Option<ObjectMeta>) -> ReplicaAnswer<String> {
        ReplicaAnswer { node: node.to_string(), held }
    }

    #[test]
    fn quorums_are_majorities() {
        assert_eq!([1, 2, 3, 4, 5].map(|n| Consistency::Quorum.required(n)), [1, 2, 2, 3, 3]);
        assert_eq!(Consistency::All.required(3), 3);
        assert_eq!(Consistency::One.required(3), 1);
    }

    #[test]
    fn the_newest_copy_wins_and_older_or_missing_copies_are_repaired() {
        let answers = [answer("a", Some(meta(1, false))), answer("b", Some(meta(2, false))), answer("c", None)];
        match resolve(&answers, 3, Consistency::All) {
            ReadOutcome::Found { meta, from, repair } => {
                assert_eq!(meta.version.counter, 2);
                assert_eq!(from, "b");
                assert_eq!(repair, vec!["a".to_string(), "c".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_newer_tombstone_hides_older_copies_and_removes_them() {
        let answers = [answer("a", Some(meta(1, false))), answer("b", Some(meta(2, true)))];
        assert_eq!(resolve(&answers, 3, Consistency::Quorum), ReadOutcome::NotFound { repair: vec!["a".to_string()] });
    }

    #[test]
    fn too_few_answers_are_not_enough() {
        let answers = [answer("a", Some(meta(1, false)))];
        assert_eq!(resolve(&answers, 3, Consistency::Quorum), ReadOutcome::NotEnough { answered: 1, required: 2 });
        assert!(matches!(resolve(&answers, 3, Consistency::One), ReadOutcome::Found { .. }));
    }
}
