//! What a standby console shows: the cluster as its store records it
//! (ARCHITECTURE.md, "Several consoles"). The leader writes every state
//! change — a node's state, an instance's placement and reported state,
//! cordons, the failover pause — so a standby that watches the store shows
//! what the leader shows, a moment later; what never goes to the store
//! (heartbeats, phi, metrics) a standby does not have, and shows as zero.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ringwatch_shared::names::{NodeName, TaskName};
use ringwatch_shared::status::{ClusterEvent, ClusterStatus, ConsoleStatus, InstanceStatus, NodeStatus, TaskStatus};

use crate::control::data::catalog::summary;
use crate::control::owner::ControlSnapshot;
use crate::control::records::Image;

/// The snapshot a standby serves from `image`, the newest `events` and who
/// it is (`console`); `data_replicas` is its replica count for a put that
/// names none, which `status` shows.
pub fn snapshot_of(
    image: &Image,
    events: Arc<[ClusterEvent]>,
    console: ConsoleStatus,
    data_replicas: u8,
    at_unix_ms: u64,
) -> ControlSnapshot {
    let mut placed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut by_task: BTreeMap<&TaskName, Vec<InstanceStatus>> = BTreeMap::new();
    for (id, record) in &image.instances {
        let node = record.node().map(ToString::to_string);
        if let Some(node) = record.node() {
            placed.entry(node.as_str()).or_default().push(id.to_string());
        }
        let state = match (&record.placement, record.reported) {
            (None, _) => "pending",
            (Some(_), Some(reported)) => reported.as_str(),
            (Some(_), None) => "starting",
        };
        by_task.entry(id.task()).or_default().push(InstanceStatus {
            id: id.to_string(),
            node,
            state: state.to_string(),
            restarts: record.restarts,
        });
    }
    let mut nodes: Vec<NodeStatus> = image
        .nodes
        .values()
        .map(|record| NodeStatus {
            name: record.name.to_string(),
            state: record.last_state,
            cordoned: record.cordoned,
            phi: 0.0,
            last_seen_ms: 0,
            cpu_percent: 0.0,
            mem_used_bytes: 0,
            mem_total_bytes: 0,
            load: [0.0; 3],
            net_rx_bytes_per_sec: 0,
            net_tx_bytes_per_sec: 0,
            weight: 1,
            heartbeats_lost: 0,
            address: String::new(),
            reason: format!("as the leader ({}) recorded it", console.leader.as_deref().unwrap_or("none yet")),
            instances: placed.remove(record.name.as_str()).unwrap_or_default(),
            cert_sha256: None,
            cert_expires_unix: None,
            data_objects: 0,
            data_bytes: 0,
            data_free_bytes: None,
            rtt_ms: None,
        })
        .collect();
    let up: BTreeSet<&str> = nodes.iter().filter(|node| node.state.is_up()).map(|node| node.name.as_str()).collect();
    let (mut data, held) = summary(image.objects.values(), |node| up.contains(node.as_str()));
    data.replicas = data_replicas;
    let mut hosts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, record) in &image.instances {
        if let Some(node) = record.node().filter(|node| up.contains(node.as_str())) {
            hosts.entry(id.task().to_string()).or_default().insert(node.to_string());
        }
    }
    let replicas: BTreeMap<String, u32> =
        image.tasks.iter().map(|(name, spec)| (name.to_string(), spec.replicas)).collect();
    let eligible =
        nodes.iter().filter(|node| node.state == ringwatch_shared::status::NodeState::Alive && !node.cordoned).count();
    for node in &mut nodes {
        if let Some((objects, bytes)) = NodeName::parse(&node.name).ok().and_then(|name| held.get(&name)) {
            node.data_objects = *objects;
            node.data_bytes = *bytes;
        }
    }
    let status = ClusterStatus {
        tasks: image
            .tasks
            .values()
            .map(|spec| TaskStatus {
                name: spec.name.to_string(),
                replicas: spec.replicas,
                instances: by_task.remove(&spec.name).unwrap_or_default(),
            })
            .collect(),
        headroom: ringwatch_shared::placement::headroom(&hosts, &replicas, eligible),
        failover_paused: image.cluster.as_ref().and_then(|cluster| cluster.failover_paused.clone()),
        nodes,
        console,
        data,
    };
    ControlSnapshot { status, samples: BTreeMap::new(), events, store_failing: None, at_unix_ms }
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::names::{InstanceId, NodeName};
    use ringwatch_shared::protocol::InstanceState;
    use ringwatch_shared::status::{ConsoleRole, NodeState};
    use ringwatch_shared::task::TaskSpec;

    use super::*;
    use crate::control::records::{InstanceRecord, NodeRecord, Placement};

    #[test]
    fn a_standby_shows_what_the_leader_recorded() {
        let mut image = Image::default();
        let spec: TaskSpec =
            ringwatch_shared::task::parse_task_file("[[task]]\nname = \"web\"\ncommand = [\"x\"]\nreplicas = 2\n")
                .unwrap()
                .remove(0);
        image.tasks.insert(spec.name.clone(), spec);
        let a = NodeName::parse("a").unwrap();
        let mut running = InstanceRecord::new(InstanceId::parse("web/0").unwrap());
        running.placement = Some(Placement { node: a.clone(), epoch: 3 });
        running.reported = Some(InstanceState::Running);
        running.restarts = 2;
        image.instances.insert(running.id.clone(), running);
        let pending = InstanceRecord::new(InstanceId::parse("web/1").unwrap());
        image.instances.insert(pending.id.clone(), pending);
        image.nodes.insert(
            a.clone(),
            NodeRecord { name: a, last_state: NodeState::Alive, cordoned: true, draining: false, drained: false },
        );
        let console = ConsoleStatus {
            name: "c2".into(),
            address: "127.0.0.1:2".into(),
            role: ConsoleRole::Standby,
            term: 7,
            leader: Some("127.0.0.1:1".into()),
            store_problem: None,
            ca_expires_unix: 0,
        };
        let snapshot = snapshot_of(&image, Arc::from(Vec::new()), console, 5, 0);
        let status = &snapshot.status;
        assert_eq!(status.console.role, ConsoleRole::Standby);
        assert_eq!((status.nodes[0].state, status.nodes[0].cordoned), (NodeState::Alive, true));
        assert_eq!(status.nodes[0].instances, ["web/0"]);
        let states: Vec<(&str, &str, u32)> = status.tasks[0]
            .instances
            .iter()
            .map(|instance| (instance.id.as_str(), instance.state.as_str(), instance.restarts))
            .collect();
        assert_eq!(states, [("web/0", "running", 2), ("web/1", "pending", 0)]);
        assert_eq!(status.headroom.failures_survived, Some(0));
    }

    /// A standby's `status` showed the default replica count (3) whatever
    /// the group's consoles were configured with.
    #[test]
    fn regression_a_standby_shows_the_configured_replica_count_not_the_default() {
        let console = ConsoleStatus {
            name: "c2".into(),
            address: "127.0.0.1:2".into(),
            role: ConsoleRole::Standby,
            term: 1,
            leader: None,
            store_problem: None,
            ca_expires_unix: 0,
        };
        let snapshot = snapshot_of(&Image::default(), Arc::from(Vec::new()), console, 5, 0);
        assert_eq!(snapshot.status.data.replicas, 5);
    }
}
