//! The first round's `state.redb`, read into today's records: a console
//! upgraded in place keeps its agents, its tasks and where they run.
//!
//! That store had four tables: `credentials` (certificate fingerprint →
//! credential JSON, the same fields as today's), `nodes` (name → last
//! state), `workloads` (one JSON document: tasks, instances with their
//! placement and epoch, cordoned nodes, the next epoch, the failover pause)
//! and `events` (unchanged). [`records_from`] turns the first three into
//! changes; the store writes them once, when its records table is empty, and
//! leaves the old tables in the file. Instances keep their `(node, epoch)`,
//! so the copies agents report are adopted, not stopped (ARCHITECTURE.md,
//! "Invariants", 1). What does not decode is skipped and said.

use std::collections::BTreeMap;

use ringwatch_shared::names::{InstanceId, NodeName};
use ringwatch_shared::status::NodeState;
use ringwatch_shared::task::TaskSpec;
use serde::Deserialize;

use crate::control::records::{Change, ClusterRecord, CredentialRecord, InstanceRecord, NodeRecord, Placement};

/// The old tables' contents, as stored (JSON text).
#[derive(Debug, Default)]
pub struct RoundOne {
    /// `credentials`: fingerprint → record.
    pub credentials: Vec<(String, String)>,
    /// `nodes`: name → last state.
    pub nodes: Vec<(String, String)>,
    /// `workloads`' one document, if any.
    pub workloads: Option<String>,
}

/// What [`records_from`] made of it.
#[derive(Debug, Default)]
pub struct Migrated {
    /// The records to write.
    pub changes: Vec<Change>,
    /// What was skipped, and why.
    pub skipped: Vec<String>,
}

/// The first round's scheduler state, as much of it as carries over.
#[derive(Debug, Deserialize)]
struct OldWorkloads {
    #[serde(default)]
    tasks: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    instances: BTreeMap<String, OldInstance>,
    #[serde(default)]
    cordoned: Vec<String>,
    #[serde(default)]
    next_epoch: u64,
    #[serde(default)]
    failover_paused: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OldInstance {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    restarts: u32,
}

/// Today's records for the first round's tables; `seed` starts the random
/// placement strategies.
pub fn records_from(old: &RoundOne, seed: u64) -> Migrated {
    let mut migrated = Migrated::default();
    let mut skip = |what: String| migrated.skipped.push(what);
    let mut changes = Vec::new();

    for (fingerprint, json) in &old.credentials {
        match serde_json::from_str::<CredentialRecord>(json) {
            Ok(record) => changes.push(Change::Credential { fingerprint: fingerprint.clone(), record }),
            Err(err) => skip(format!("credential {fingerprint}: {err}")),
        }
    }

    let mut nodes: BTreeMap<NodeName, NodeRecord> = BTreeMap::new();
    for (name, json) in &old.nodes {
        match (NodeName::parse(name), serde_json::from_str::<NodeState>(json)) {
            (Ok(node), Ok(state)) => {
                nodes.insert(node.clone(), NodeRecord::new(node, state));
            }
            (Err(err), _) => skip(format!("node {name:?}: {err}")),
            (_, Err(err)) => skip(format!("node {name:?}: {err}")),
        }
    }

    let mut cluster = ClusterRecord::new(seed);
    if let Some(json) = &old.workloads {
        match serde_json::from_str::<OldWorkloads>(json) {
            Ok(workloads) => {
                for (name, spec) in workloads.tasks {
                    match serde_json::from_value::<TaskSpec>(spec) {
                        Ok(spec) => changes.push(Change::Task(spec)),
                        Err(err) => skip(format!("task {name:?}: {err}")),
                    }
                }
                for (id, instance) in workloads.instances {
                    match instance_record(&id, &instance) {
                        Ok(record) => {
                            cluster.last_epoch = cluster.last_epoch.max(instance.epoch);
                            changes.push(Change::Instance(record));
                        }
                        Err(err) => skip(format!("instance {id:?}: {err}")),
                    }
                }
                for name in workloads.cordoned {
                    match NodeName::parse(&name) {
                        Ok(node) => {
                            nodes
                                .entry(node.clone())
                                .or_insert_with(|| NodeRecord::new(node, NodeState::Unknown))
                                .cordoned = true;
                        }
                        Err(err) => skip(format!("cordoned node {name:?}: {err}")),
                    }
                }
                // Epochs only grow: the next one given must be above every
                // one the first round gave.
                cluster.last_epoch = cluster.last_epoch.max(workloads.next_epoch.saturating_sub(1));
                cluster.failover_paused = workloads.failover_paused;
            }
            Err(err) => skip(format!("the tasks and placements: {err}")),
        }
    }
    changes.extend(nodes.into_values().map(Change::Node));
    changes.push(Change::Cluster(cluster));
    migrated.changes = changes;
    migrated
}

fn instance_record(id: &str, old: &OldInstance) -> Result<InstanceRecord, String> {
    let mut record = InstanceRecord::new(InstanceId::parse(id).map_err(|err| err.to_string())?);
    if let Some(node) = &old.node {
        let node = NodeName::parse(node).map_err(|err| err.to_string())?;
        record.placement = Some(Placement { node, epoch: old.epoch });
        record.placed_before = true;
    }
    record.restarts = old.restarts;
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The first round's JSON, as its store wrote it (shapes from its
    /// `PersistedWorkloads`, `CredentialRecord` and `NodeState`).
    fn round_one() -> RoundOne {
        // The task as the first round serialized it: the same fields as
        // today's `TaskSpec`, the name a plain string.
        let spec = &ringwatch_shared::task::parse_task_file(
            "[[task]]\nname = \"web\"\ncommand = [\"sleep\", \"1000\"]\nreplicas = 2\n",
        )
        .unwrap()[0];
        let task = serde_json::to_string(spec).unwrap();
        RoundOne {
            credentials: vec![
                ("ab12".into(), r#"{"name":"web-1","key_fingerprint":"ff00","issued_unix":1700000000,"revoked":false}"#.into()),
                ("cd34".into(), "not json".into()),
            ],
            nodes: vec![("web-1".into(), r#""alive""#.into()), ("web-2".into(), r#""failed""#.into())],
            workloads: Some(
                r#"{
                  "tasks": {"web": TASK},
                  "instances": {
                    "web/0": {"task": "web", "index": 0, "node": "web-1", "epoch": 7, "phase": "running", "restarts": 2, "source": null, "avoid": []},
                    "web/1": {"task": "web", "index": 1, "node": null, "epoch": 0, "phase": "pending", "restarts": 0, "source": null, "avoid": []}
                  },
                  "cordoned": ["web-2"],
                  "next_epoch": 9,
                  "failover_paused": null
                }"#
                .replace("TASK", &task),
            ),
        }
    }

    #[test]
    fn a_round_one_store_keeps_its_agents_tasks_placements_and_epochs() {
        let migrated = records_from(&round_one(), 5);
        let changes = &migrated.changes;
        let credential = changes.iter().find_map(|change| match change {
            Change::Credential { fingerprint, record } if fingerprint == "ab12" => Some(record),
            _ => None,
        });
        assert_eq!(credential.unwrap().name.as_str(), "web-1");
        assert_eq!(migrated.skipped.len(), 1, "the credential that does not decode: {:?}", migrated.skipped);
        assert!(migrated.skipped[0].contains("cd34"));
        assert!(changes.iter().any(|change| matches!(change, Change::Task(spec) if spec.name.as_str() == "web")));
        let placed = changes.iter().find_map(|change| match change {
            Change::Instance(record) if record.id.to_string() == "web/0" => Some(record),
            _ => None,
        });
        let placed = placed.unwrap();
        assert_eq!(placed.placement, Some(Placement { node: NodeName::parse("web-1").unwrap(), epoch: 7 }));
        assert_eq!(placed.restarts, 2);
        assert!(changes.iter().any(
            |change| matches!(change, Change::Instance(r) if r.id.to_string() == "web/1" && r.placement.is_none())
        ));
        let failed = changes.iter().find_map(|change| match change {
            Change::Node(record) if record.name.as_str() == "web-2" => Some(record),
            _ => None,
        });
        let failed = failed.unwrap();
        assert!(failed.cordoned);
        assert_eq!(failed.last_state, NodeState::Failed);
        let cluster = changes.iter().find_map(|change| match change {
            Change::Cluster(record) => Some(record),
            _ => None,
        });
        assert_eq!(cluster.unwrap().last_epoch, 8, "the next epoch given is above every old one");
    }

    #[test]
    fn an_empty_round_one_store_gives_only_a_cluster_record() {
        let migrated = records_from(&RoundOne::default(), 1);
        assert!(matches!(migrated.changes.as_slice(), [Change::Cluster(_)]));
        assert!(migrated.skipped.is_empty());
    }
}
