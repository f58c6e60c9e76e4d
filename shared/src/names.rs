//! Node names, task names and instance ids, checked once when they are
//! parsed: a value of these types is always valid, so code holding one never
//! checks again (and cannot forget to).
//!
//! Node and task names follow one rule (README.md, "Workloads"): 1–63 of
//! `a-z 0-9 . _ -`, starting with a letter or digit. They become directory
//! names (`instances/<task>-<index>/`) and appear in logs and the console, so
//! nothing else — no `/`, no spaces, no upper case — is allowed. An instance
//! id is `task/index`, the index written in canonical decimal so that one
//! instance has exactly one spelling.
//!
//! All three serialize as their text and deserialize through `parse`, so an
//! invalid name in a frame or a file fails to decode instead of slipping in.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::task::MAX_REPLICAS;

/// The longest node or task name, in bytes (all allowed characters are
/// ASCII, so also in characters).
pub const MAX_NAME_LEN: usize = 63;

/// The rule, as error messages state it.
const NAME_RULE: &str = "use 1–63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit";

/// How much of a refused value an error quotes: enough to recognise it, not
/// a megabyte of garbage echoed into a log.
const QUOTED_LEN: usize = 80;

/// The one rule for node and task names: 1–63 of `a-z 0-9 . _ -`, the first
/// a letter or digit.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// A name or instance id was refused. The value is quoted (shortened if
/// long, with control characters escaped) and the rule stated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A node name breaks the naming rule.
    #[error("node name {value:?} is invalid: {NAME_RULE}")]
    Node {
        /// The refused value, shortened.
        value: String,
    },
    /// A task name breaks the naming rule.
    #[error("task name {value:?} is invalid: {NAME_RULE}")]
    Task {
        /// The refused value, shortened.
        value: String,
    },
    /// An instance id is not `task/index` with a valid task name.
    #[error(
        "instance id {value:?} is invalid: write TASK/INDEX, like \"web/0\", where TASK is a task name ({NAME_RULE})"
    )]
    Instance {
        /// The refused value, shortened.
        value: String,
    },
    /// An instance id's index is not canonical decimal or is out of range.
    #[error(
        "instance id {value:?} has an invalid index: write it in decimal without sign or leading zeros, from 0 to {max}",
        max = MAX_REPLICAS - 1
    )]
    Index {
        /// The refused value, shortened.
        value: String,
    },
}

/// The part of `value` an error quotes.
fn quoted(value: &str) -> String {
    if value.len() <= QUOTED_LEN {
        return value.to_string();
    }
    let mut cut = QUOTED_LEN;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &value[..cut])
}

/// Generates the shared surface of a validated name type.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `text` against the naming rule.
            ///
            /// # Errors
            /// When `text` breaks the rule; the error quotes it.
            pub fn parse(text: &str) -> Result<Self, NameError> {
                if is_valid_name(text) {
                    Ok(Self(Arc::from(text)))
                } else {
                    Err(NameError::$variant { value: quoted(text) })
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(text: &str) -> Result<Self, NameError> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hash, Eq and Ord are those of the text (derived on the one
        // `Arc<str>` field), as `Borrow` requires: maps keyed by the name
        // can be searched with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A node's name, unique in the cluster: 1–63 of `a-z 0-9 . _ -`,
    /// starting with a letter or digit. Cloning is cheap (shared text).
    NodeName,
    Node
);

name_type!(
    /// A task's name, unique in the desired state: the same rule as node
    /// names. Cloning is cheap (shared text).
    TaskName,
    Task
);

/// One instance of a task: `task/index`, with `index < MAX_REPLICAS`.
/// Ordered by task, then index numerically (`web/2` before `web/10`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId {
    /// Field order matters: the derived ordering is by task, then index.
    task: TaskName,
    index: u32,
}

impl InstanceId {
    /// The instance `index` of `task`.
    ///
    /// # Errors
    /// When `index` is not below [`MAX_REPLICAS`]: no task has that instance.
    pub fn new(task: TaskName, index: u32) -> Result<Self, NameError> {
        if index < MAX_REPLICAS {
            Ok(Self { task, index })
        } else {
            Err(NameError::Index { value: format!("{task}/{index}") })
        }
    }

    /// Reads `task/index`.
    ///
    /// # Errors
    /// When the text is not that shape, the task name is invalid, or the
    /// index is not canonical decimal below [`MAX_REPLICAS`].
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let Some((task, index)) = text.split_once('/') else {
            return Err(NameError::Instance { value: quoted(text) });
        };
        let Ok(task) = TaskName::parse(task) else {
            return Err(NameError::Instance { value: quoted(text) });
        };
        let index = parse_index(index).ok_or_else(|| NameError::Index { value: quoted(text) })?;
        Self::new(task, index)
    }

    /// The task.
    pub fn task(&self) -> &TaskName {
        &self.task
    }

    /// The index within the task.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// Canonical decimal: digits only, no leading zero except `0` itself.
/// Bounded before the conversion so no length of digits overflows.
fn parse_index(text: &str) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.len() <= 10
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.task, self.index)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl FromStr for InstanceId {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, NameError> {
        Self::parse(text)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;

    use super::*;

    /// The rule restated independently of `is_valid_name`, char by char.
    fn oracle(name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        (1..=63).contains(&chars.len())
            && chars[0].is_ascii_alphanumeric()
            && !chars[0].is_ascii_uppercase()
            && chars.iter().all(|c| "abcdefghijklmnopqrstuvwxyz0123456789._-".contains(*c))
    }

    #[test]
    fn names_follow_the_rule() {
        for good in ["a", "0", "node-1", "web.eu_2", &"x".repeat(63)] {
            assert_eq!(NodeName::parse(good).unwrap().as_str(), good);
            assert_eq!(TaskName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "-a", ".a", "_a", "A", "a/b", "a b", "é", "a\0", &"x".repeat(64)] {
            assert!(NodeName::parse(bad).is_err(), "{bad:?}");
            assert!(TaskName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_quote_the_value_and_state_the_rule() {
        let node = NodeName::parse("Web 1").unwrap_err().to_string();
        assert_eq!(
            node,
            "node name \"Web 1\" is invalid: use 1–63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        );
        let task = TaskName::parse("a\nb").unwrap_err().to_string();
        assert!(task.starts_with("task name \"a\\nb\" is invalid: use 1–63"), "{task}");
        let long = TaskName::parse(&"é".repeat(1000)).unwrap_err().to_string();
        assert!(long.len() < 300 && long.contains("…"), "{long}");
        let shape = InstanceId::parse("web").unwrap_err().to_string();
        assert!(shape.contains("\"web\"") && shape.contains("TASK/INDEX"), "{shape}");
        let index = InstanceId::parse("web/01").unwrap_err().to_string();
        assert!(index.contains("\"web/01\"") && index.contains("from 0 to 9999"), "{index}");
    }

    #[test]
    fn instance_ids_are_task_slash_canonical_index() {
        let id = InstanceId::parse("web/12").unwrap();
        assert_eq!((id.task().as_str(), id.index()), ("web", 12));
        assert_eq!(id.to_string(), "web/12");
        assert_eq!(InstanceId::parse("web/9999").unwrap().index(), MAX_REPLICAS - 1);
        for bad in [
            "web",
            "web/",
            "/0",
            "web/-1",
            "web/+1",
            "web/01",
            "web/00",
            "web/1.0",
            "web/ 1",
            "web/10000",
            "web/4294967296",
            "web/99999999999999999999",
            "Web/0",
            "web/0/1",
            "a/b/0",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
        assert!(InstanceId::new(TaskName::parse("web").unwrap(), MAX_REPLICAS).is_err());
        assert_eq!(InstanceId::new(TaskName::parse("web").unwrap(), 3).unwrap(), InstanceId::parse("web/3").unwrap());
    }

    #[test]
    fn instance_ids_order_by_task_then_index_numerically() {
        let mut ids: Vec<InstanceId> =
            ["web/10", "db/3", "web/2", "web/0", "db/20"].iter().map(|id| id.parse().unwrap()).collect();
        ids.sort();
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["db/3", "db/20", "web/0", "web/2", "web/10"]);
    }

    #[test]
    fn maps_keyed_by_names_are_searched_with_text() {
        let mut tree = BTreeMap::new();
        tree.insert(NodeName::parse("a").unwrap(), 1);
        assert_eq!(tree.get("a"), Some(&1));
        let mut hash = HashMap::new();
        hash.insert(TaskName::parse("web").unwrap(), 2);
        assert_eq!(hash.get("web"), Some(&2));
    }

    #[test]
    fn serde_writes_text_and_refuses_invalid_names_on_the_way_in() {
        let id = InstanceId::parse("web/3").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"web/3\"");
        assert_eq!(serde_json::from_str::<InstanceId>("\"web/3\"").unwrap(), id);
        assert_eq!(serde_json::to_string(&NodeName::parse("n1").unwrap()).unwrap(), "\"n1\"");
        let err = serde_json::from_str::<NodeName>("\"N 1\"").unwrap_err().to_string();
        assert!(err.contains("node name \"N 1\" is invalid"), "{err}");
        assert!(serde_json::from_str::<TaskName>("\"\"").is_err());
        assert!(serde_json::from_str::<InstanceId>("\"web/007\"").is_err());

        // postcard: the text on the wire, checked when decoded.
        let bytes = postcard::to_stdvec(&id).unwrap();
        assert_eq!(postcard::from_bytes::<InstanceId>(&bytes).unwrap(), id);
        assert_eq!(bytes, postcard::to_stdvec("web/3").unwrap());
        let forged = postcard::to_stdvec("../etc").unwrap();
        assert!(postcard::from_bytes::<TaskName>(&forged).is_err());
        assert!(postcard::from_bytes::<NodeName>(&forged).is_err());
        assert!(postcard::from_bytes::<InstanceId>(&postcard::to_stdvec("web/10000").unwrap()).is_err());
    }

    fn valid_name() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9._-]{0,62}"
    }

    fn instance_id() -> impl Strategy<Value = InstanceId> {
        (valid_name(), 0..MAX_REPLICAS)
            .prop_map(|(task, index)| InstanceId::new(TaskName::parse(&task).unwrap(), index).unwrap())
    }

    proptest! {
        #[test]
        fn names_survive_display_and_parse(name in valid_name()) {
            let node = NodeName::parse(&name).unwrap();
            prop_assert_eq!(NodeName::parse(&format!("{node}")).unwrap(), node.clone());
            let task = TaskName::parse(&name).unwrap();
            prop_assert_eq!(task.to_string().parse::<TaskName>().unwrap(), task.clone());
            let json = serde_json::to_string(&task).unwrap();
            prop_assert_eq!(serde_json::from_str::<TaskName>(&json).unwrap(), task);
        }

        #[test]
        fn instance_ids_survive_display_and_parse(id in instance_id()) {
            prop_assert_eq!(InstanceId::parse(&id.to_string()).unwrap(), id.clone());
            let bytes = postcard::to_stdvec(&id).unwrap();
            prop_assert_eq!(postcard::from_bytes::<InstanceId>(&bytes).unwrap(), id);
        }

        #[test]
        fn any_text_is_accepted_exactly_when_the_rule_allows(text in any::<String>()) {
            prop_assert_eq!(NodeName::parse(&text).is_ok(), oracle(&text));
            prop_assert_eq!(TaskName::parse(&text).is_ok(), oracle(&text));
            let _ = InstanceId::parse(&text);
        }

        #[test]
        fn near_misses_are_accepted_exactly_when_the_rule_allows(text in "[a-zA-Z0-9._/ +-]{0,70}") {
            prop_assert_eq!(NodeName::parse(&text).is_ok(), oracle(&text));
            prop_assert_eq!(TaskName::parse(&text).is_ok(), oracle(&text));
        }

        #[test]
        fn accepted_instance_ids_have_one_spelling(text in "[a-z0-9]{1,4}/[0-9+-]{0,12}") {
            // Whatever parses displays back as the same text: no two
            // spellings name one instance.
            if let Ok(id) = InstanceId::parse(&text) {
                prop_assert_eq!(id.to_string(), text);
            }
        }
    }
}
