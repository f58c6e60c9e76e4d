//! Colours and styles, in one place so views agree: a node's state has one
//! colour everywhere (table, ring, events, detail).

use ratatui::style::{Color, Modifier, Style};
use ringwatch_shared::status::NodeState;

/// The colour of a node state.
pub fn state_color(state: NodeState) -> Color {
    match state {
        NodeState::Alive => Color::Green,
        NodeState::Suspect => Color::Yellow,
        NodeState::Failed => Color::Red,
        NodeState::Degraded => Color::Magenta,
        NodeState::Left => Color::DarkGray,
        NodeState::Unknown => Color::Gray,
    }
}

/// The colour of an instance state: running green, on its way yellow,
/// waiting grey, failed red, stopped dark.
pub fn instance_color(state: &str) -> Color {
    match state {
        "running" => Color::Green,
        "starting" | "restarting" => Color::Yellow,
        "failed" => Color::Red,
        "stopping" | "stopped" => Color::DarkGray,
        _ => Color::Gray,
    }
}

/// The style of an instance state's name.
pub fn instance_style(state: &str) -> Style {
    let style = Style::new().fg(instance_color(state));
    if state == "failed" { style.add_modifier(Modifier::BOLD) } else { style }
}

/// The style of a node state's name in tables and text.
pub fn state_style(state: NodeState) -> Style {
    let style = Style::new().fg(state_color(state));
    if state == NodeState::Failed { style.add_modifier(Modifier::BOLD) } else { style }
}

/// The selected table row: one solid bar (as in k9s and bottom), legible
/// over any state colour or dimmed row.
pub fn selected_row() -> Style {
    Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
}

/// Table headers.
pub fn header() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

/// Block borders.
pub fn border() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// Block titles.
pub fn title() -> Style {
    Style::new().fg(Color::White).add_modifier(Modifier::BOLD)
}

/// Secondary text: hints, units, empty states.
pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A key name in hints and help.
pub fn key() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

/// The active tab.
pub fn tab_active() -> Style {
    Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
}

/// An inactive tab.
pub fn tab() -> Style {
    Style::new().fg(Color::Gray)
}

/// A status-line message that reports success.
pub fn ok() -> Style {
    Style::new().fg(Color::Green)
}

/// A status-line message that reports a failure or refusal.
pub fn error() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// A status-line message that only informs.
pub fn info() -> Style {
    Style::new().fg(Color::Yellow)
}

/// The paused-failover banner: impossible to miss.
pub fn banner() -> Style {
    Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
}

/// A headroom figure: red when one more failure (or capacity) is a
/// problem, green otherwise.
pub fn headroom(failures_survived: Option<i64>, capacity_ok: bool) -> Style {
    match failures_survived {
        None => dim(),
        Some(survived) if survived <= 0 || !capacity_ok => error(),
        Some(_) => ok(),
    }
}

/// The highlight drawn outside the selected node's arcs on the ring, and
/// on its instances' dots.
pub const RING_HIGHLIGHT: Color = Color::White;

/// The ring's colours by data share (README.md, "Data"): a node's share of
/// the data against an even share, below which each colour applies, and
/// the legend's compact and roomy labels. Even is green; much more than
/// even is red, much less blue; a node holding nothing is dark.
pub const DATA_SHARES: [(f64, Color, &str, &str); 5] = [
    (0.5, Color::Blue, "<½", "< ½"),
    (0.8, Color::Cyan, "<.8", "< 0.8"),
    (1.25, Color::Green, "≈1", "≈ even"),
    (2.0, Color::Yellow, "<2", "< 2"),
    (f64::INFINITY, Color::Red, "≥2", "≥ 2"),
];

/// The colour of a node holding nothing, in the data share colours.
pub const DATA_NONE: Color = Color::DarkGray;

/// The colour of a node's data share against an even share (`None`: it
/// holds nothing).
pub fn data_share_color(ratio: Option<f64>) -> Color {
    let Some(ratio) = ratio else { return DATA_NONE };
    DATA_SHARES.iter().find(|(below, ..)| ratio < *below).map_or(Color::Red, |(_, color, ..)| *color)
}

/// Chart series: CPU, memory, received, sent.
pub const CPU: Color = Color::Cyan;
/// Memory series.
pub const MEMORY: Color = Color::Magenta;
/// Received bytes series.
pub const NET_RX: Color = Color::Green;
/// Sent bytes series.
pub const NET_TX: Color = Color::Blue;

/// A usage bar's colour by how full it is.
pub fn usage_color(percent: f64) -> Color {
    if percent >= 90.0 {
        Color::Red
    } else if percent >= 70.0 {
        Color::Yellow
    } else {
        Color::Green
    }
}
