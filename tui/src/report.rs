//! Human renderings of the cluster for the command line.

use std::fmt::Write as _;

use ringwatch_shared::protocol::{CredentialInfo, TokenInfo};
use ringwatch_shared::status::{ClusterStatus, ConsoleRole, ConsoleStatus, NodeState};
use ringwatch_shared::task::TaskSpec;

/// Bytes as a short human figure (`1.2G`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    #[allow(clippy::cast_precision_loss)] // a display figure
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", UNITS[unit]) }
}

/// Milliseconds as a short age (`120ms`, `3.2s`, `4m`).
pub fn human_age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

/// The node table and a summary line, as `ringwatch status` prints them.
pub fn status_table(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let header = ["NODE", "STATE", "PHI", "LAST SEEN", "CPU", "MEMORY", "LOAD", "WEIGHT", "INSTANCES"];
    let rows: Vec<[String; 9]> = status
        .nodes
        .iter()
        .map(|node| {
            let state = if node.cordoned { format!("{},cordoned", node.state) } else { node.state.to_string() };
            [
                node.name.clone(),
                state,
                if node.phi >= 100.0 { "≥100".to_string() } else { format!("{:.1}", node.phi) },
                if node.last_seen_ms == 0 && node.state == NodeState::Unknown {
                    "-".into()
                } else {
                    human_age(node.last_seen_ms)
                },
                format!("{:.1}%", node.cpu_percent),
                format!("{}/{}", human_bytes(node.mem_used_bytes), human_bytes(node.mem_total_bytes)),
                format!("{:.2}", node.load[0]),
                node.weight.to_string(),
                node.instances.len().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    let mut counts: Vec<(NodeState, usize)> = Vec::new();
    for node in &status.nodes {
        match counts.iter_mut().find(|(state, _)| *state == node.state) {
            Some((_, count)) => *count += 1,
            None => counts.push((node.state, 1)),
        }
    }
    counts.sort();
    let summary: Vec<String> = counts.iter().map(|(state, count)| format!("{count} {state}")).collect();
    let _ = writeln!(
        out,
        "{} node(s){}{}",
        status.nodes.len(),
        if summary.is_empty() { "" } else { ": " },
        summary.join(", ")
    );
    if !status.tasks.is_empty() {
        let _ = writeln!(out, "headroom: {}", ringwatch_shared::plan::describe(status.headroom));
    }
    if let Some(reason) = &status.failover_paused {
        let _ = writeln!(out, "AUTOMATIC FAILOVER PAUSED: {reason}");
    }
    let data = &status.data;
    if data.objects > 0 {
        let _ = write!(out, "data: {} object(s), {}", data.objects, human_bytes(data.bytes));
        if data.under_replicated > 0 {
            let _ = write!(out, "; {} under-replicated", data.under_replicated);
        }
        if data.unavailable > 0 {
            let _ = write!(out, "; {} UNAVAILABLE (no live copy)", data.unavailable);
        }
        if data.repair_bytes_per_sec > 0 {
            let _ = write!(out, "; repairing at {}/s", human_bytes(data.repair_bytes_per_sec));
        }
        let _ = writeln!(out);
    }
    out
}

/// Left-aligned columns, two spaces apart: every table the command line
/// prints.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// A line about the console that answered, when it belongs to a group or
/// its store is in trouble; nothing for a healthy single console.
pub fn console_line(console: &ConsoleStatus) -> String {
    let mut out = String::new();
    match console.role {
        ConsoleRole::Standby => {
            let leader = console.leader.as_deref().unwrap_or("none yet");
            let _ = writeln!(
                out,
                "console \"{}\" ({}) is a standby; the leader is {leader} (term {})",
                console.name, console.address, console.term
            );
        }
        ConsoleRole::Leader if console.term > 0 => {
            let _ = writeln!(
                out,
                "console \"{}\" ({}) leads the group (term {})",
                console.name, console.address, console.term
            );
        }
        ConsoleRole::Leader => {}
    }
    if let Some(problem) = &console.store_problem {
        let _ = writeln!(out, "WARNING: the state store cannot be written; no decision takes effect: {problem}");
    }
    out
}

/// The cluster CA's expiry, as `ringwatch status` prints it below the
/// tables: a date, or within 90 days a warning saying what to do
/// (README.md, "Certificates"). Nothing when the console did not say.
pub fn ca_line(console: &ConsoleStatus, now_unix: u64) -> String {
    if console.ca_expires_unix == 0 {
        return String::new();
    }
    let validity = ringwatch_shared::lifetime::Validity { not_before_unix: 0, not_after_unix: console.ca_expires_unix };
    if validity.expires_within(ringwatch_shared::lifetime::CA_WARNING, now_unix) {
        format!("WARNING: {}\n", crate::control::pki::ca_expiry_warning(console.ca_expires_unix, now_unix))
    } else {
        format!("cluster CA valid until {}\n", ringwatch_net::cert::format_unix(console.ca_expires_unix))
    }
}

/// The desired tasks, as `ringwatch task list` prints them.
pub fn task_table(tasks: &[TaskSpec]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|task| {
            vec![
                task.name.to_string(),
                task.replicas.to_string(),
                format!("{:?}", task.placement).to_lowercase(),
                format!("{:?}", task.restart.mode).to_lowercase(),
                format!("{:?}", task.migrate.mode).to_lowercase(),
                task.command.join(" "),
            ]
        })
        .collect();
    columns(&["TASK", "REPLICAS", "PLACEMENT", "RESTART", "MIGRATE", "COMMAND"], &rows)
}

/// A Unix time (seconds) in RFC 3339, UTC.
pub fn unix_time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)).to_string()
}

/// Whether something issued is revoked, expired or valid, in words.
fn validity(revoked: bool, expires_unix: u64, now_unix: u64) -> &'static str {
    if revoked {
        "revoked"
    } else if expires_unix < now_unix {
        "expired"
    } else {
        "valid"
    }
}

/// Operator credentials, as `ringwatch credential list` prints them.
pub fn credential_table(credentials: &[CredentialInfo], now_unix: u64) -> String {
    let rows: Vec<Vec<String>> = credentials
        .iter()
        .map(|credential| {
            vec![
                credential.name.clone(),
                credential.role.to_string(),
                unix_time(credential.issued_unix),
                unix_time(credential.expires_unix),
                validity(credential.revoked, credential.expires_unix, now_unix).to_string(),
                credential.fingerprint.chars().take(16).collect(),
            ]
        })
        .collect();
    columns(&["NAME", "ROLE", "ISSUED", "EXPIRES", "STATE", "SHA-256"], &rows)
}

/// Join tokens, as `ringwatch join-token --list` prints them (times in UTC).
pub fn token_table(tokens: &[TokenInfo], now_unix: u64) -> String {
    let time = unix_time;
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            let state = validity(token.revoked, token.expires_unix, now_unix);
            vec![
                token.id.clone(),
                time(token.issued_unix),
                time(token.expires_unix),
                state.to_string(),
                if token.joined.is_empty() { "-".to_string() } else { token.joined.join(",") },
            ]
        })
        .collect();
    columns(&["ID", "ISSUED", "EXPIRES", "STATE", "JOINED"], &rows)
}

/// Instances, as `ringwatch status` prints them after the nodes.
pub fn instance_table(status: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = status
        .tasks
        .iter()
        .flat_map(|task| task.instances.iter())
        .map(|instance| {
            vec![
                instance.id.clone(),
                instance.node.clone().unwrap_or_else(|| "-".into()),
                instance.state.clone(),
                instance.restarts.to_string(),
            ]
        })
        .collect();
    columns(&["INSTANCE", "NODE", "STATE", "RESTARTS"], &rows)
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::status::NodeStatus;

    use super::*;

    fn node(name: &str, state: NodeState) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            state,
            cordoned: false,
            phi: 0.25,
            last_seen_ms: 120,
            cpu_percent: 3.1,
            mem_used_bytes: 1 << 30,
            mem_total_bytes: 8 << 30,
            load: [0.5, 0.4, 0.3],
            net_rx_bytes_per_sec: 0,
            net_tx_bytes_per_sec: 0,
            weight: 2,
            heartbeats_lost: 0,
            address: String::new(),
            reason: String::new(),
            instances: Vec::new(),
            cert_sha256: None,
            cert_expires_unix: None,
            data_objects: 0,
            data_bytes: 0,
            data_free_bytes: None,
            rtt_ms: None,
        }
    }

    #[test]
    fn the_table_has_a_row_per_node_and_a_summary() {
        let status = ClusterStatus {
            nodes: vec![node("a", NodeState::Alive), node("b", NodeState::Failed), node("c", NodeState::Alive)],
            tasks: Vec::new(),
            ..ClusterStatus::default()
        };
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE  STATE"));
        assert!(lines[2].starts_with("b     failed  0.2"), "{}", lines[2]);
        assert_eq!(lines[4], "3 node(s): 2 alive, 1 failed");
        assert!(!table.contains("data:"), "no data line without objects");
    }

    #[test]
    fn the_data_store_gets_a_line_saying_what_is_wrong() {
        let mut status = ClusterStatus { nodes: vec![node("a", NodeState::Alive)], ..ClusterStatus::default() };
        status.data = ringwatch_shared::status::DataStatus {
            objects: 20,
            bytes: 3 << 30,
            replicas: 3,
            under_replicated: 4,
            unavailable: 1,
            repair_bytes_per_sec: 0,
        };
        let table = status_table(&status);
        assert!(
            table.contains("data: 20 object(s), 3.0G; 4 under-replicated; 1 UNAVAILABLE (no live copy)"),
            "{table}"
        );
    }

    #[test]
    fn the_ca_expiry_is_a_date_then_a_warning_90_days_ahead() {
        let now = 1_795_883_482;
        let mut console = ConsoleStatus { ca_expires_unix: now + 91 * 86_400, ..ConsoleStatus::default() };
        assert_eq!(ca_line(&console, now), "cluster CA valid until 2027-02-27 16:31:22 UTC\n");
        console.ca_expires_unix = now + 89 * 86_400 + 5;
        let line = ca_line(&console, now);
        assert!(line.starts_with("WARNING: the cluster CA expires at 2027-02-25"), "{line}");
        assert!(line.contains("in 89 days") && line.contains("joins again"), "{line}");
        console.ca_expires_unix = now - 1;
        assert!(ca_line(&console, now).contains("expired"), "{}", ca_line(&console, now));
        console.ca_expires_unix = 0;
        assert_eq!(ca_line(&console, now), "");
    }

    #[test]
    fn figures_read_short() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(3 << 30), "3.0G");
        assert_eq!(human_age(120), "120ms");
        assert_eq!(human_age(3_200), "3.2s");
        assert_eq!(human_age(240_000), "4m");
    }
}
