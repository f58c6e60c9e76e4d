//! The `?` overlay: every key, grouped.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::ui::state::App;
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// Sections of `(keys, what they do)`.
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "move",
        &[
            ("↑ ↓  k j", "select a node · scroll events"),
            ("PgUp PgDn", "a page up or down"),
            ("g G  Home End", "first · last (End follows the log)"),
            ("Enter · Esc", "node detail · back, clear filter"),
            ("Tab  1 2 3 4", "views: overview, nodes, events, tasks"),
        ],
    ),
    (
        "table",
        &[
            ("/", "filter nodes and events (Enter keeps, Esc clears)"),
            ("s · S", "sort: name, state, phi, cpu, memory · reverse"),
        ],
    ),
    ("actions (arrive with workloads)", &[("r m d c w", "restart, migrate, drain, cordon, what-if")]),
    ("demo (ringwatch demo only)", &[("x p t h", "crash, partition, stall, heal the selected node")]),
    ("mouse", &[("click", "select a row, a node on the ring, a tab"), ("wheel", "move the selection · scroll")]),
    ("", &[("?", "close this help"), ("q  Ctrl-C", "quit")]),
];

/// Draws the overlay centred over `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let key_width =
        KEYS.iter().flat_map(|(_, keys)| keys.iter()).map(|(keys, _)| keys.chars().count()).max().unwrap_or(0);
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (section, keys) in KEYS {
        if !section.is_empty() {
            let demo_off = section.starts_with("demo") && !app.demo;
            let style = if demo_off { theme::dim() } else { theme::header() };
            lines.push(Line::styled(format!(" {section}"), style));
        } else {
            lines.push(Line::raw(""));
        }
        for (keys, what) in *keys {
            lines.push(Line::from(vec![
                Span::styled(format!("   {keys:<key_width$}  "), theme::key()),
                Span::raw(*what),
            ]));
        }
    }
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 3;
    let width = u16::try_from(width).unwrap_or(u16::MAX);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let outer = block(title("keys", vec![Span::styled("Esc or ? closes ", theme::dim())]));
    frame.render_widget(Paragraph::new(lines).block(outer), popup);
}
