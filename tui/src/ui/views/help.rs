//! The `?` overlay: every key and `:` command, grouped. It scrolls when the
//! screen is too short for all of it (80×24 is).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::ui::keys::COMMANDS;
use crate::ui::state::{App, Hits};
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// Sections of `(keys, what they do)`. The `:` commands follow the
/// actions, from [`COMMANDS`].
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "move",
        &[
            ("↑ ↓  k j", "select a node or task · scroll events"),
            ("PgUp PgDn", "a page up or down"),
            ("g G  Home End", "first · last (End follows the log)"),
            ("Enter · Esc", "detail (tasks: the instance's node) · back"),
            ("Tab  1 2 3 4", "views: overview, nodes, events, tasks"),
        ],
    ),
    (
        "table · ring",
        &[
            ("/", "filter nodes, tasks, events (Enter keeps, Esc clears)"),
            ("s · S", "sort: name, state, phi, cpu, memory · reverse"),
            ("a", "ring arcs coloured by node state · by data share"),
        ],
    ),
    (
        "actions: the plan first, Enter/y confirms, Esc/n cancels",
        &[
            ("r", "restart the selected task or instance (tasks view),"),
            ("", "or one of the selected node's instances"),
            ("m", "migrate an instance: pick it, then an eligible node"),
            ("d", "drain the node: cordon it, move its instances away"),
            ("c", "cordon the node (no new work) · uncordon it"),
            ("w", "what-if: the plan if the node failed now (read-only),"),
            ("", "and the objects left below quorum or unavailable"),
            ("", "d c w: the selected node; in tasks, the instance's"),
        ],
    ),
];

/// Sections after the commands.
const MORE: &[(&str, &[(&str, &str)])] = &[
    ("demo (ringwatch demo only)", &[("x p t h", "crash, partition, stall, heal the selected node")]),
    ("mouse", &[("click", "select a row, a node on the ring, a tab"), ("wheel", "move the selection · scroll")]),
    ("", &[("?", "close this help (↑↓ scroll it)"), ("q  Ctrl-C", "quit")]),
];

/// Draws the overlay centred over `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits) {
    let commands: Vec<(String, &str)> = COMMANDS
        .iter()
        .map(|(name, args, what)| (if args.is_empty() { format!(":{name}") } else { format!(":{name} {args}") }, *what))
        .collect();
    let commands: Vec<(&str, &str)> = commands.iter().map(|(usage, what)| (usage.as_str(), *what)).collect();
    let command_section = [("command line: `:` then Enter (the same plans)", commands.as_slice())];
    // One key column for the keys; the commands, longer, get their own.
    let widest = |sections: &[(&str, &[(&str, &str)])]| {
        sections.iter().flat_map(|(_, keys)| keys.iter()).map(|(keys, _)| keys.chars().count()).max().unwrap_or(0)
    };
    let keys_width = widest(KEYS).max(widest(MORE));
    let commands_width = widest(&command_section);
    let sections = KEYS
        .iter()
        .map(|section| (section, keys_width))
        .chain(command_section.iter().map(|section| (section, commands_width)))
        .chain(MORE.iter().map(|section| (section, keys_width)));
    let mut lines: Vec<Line<'_>> = Vec::new();
    for ((section, keys), key_width) in sections {
        if section.is_empty() {
            lines.push(Line::raw(""));
        } else {
            let demo_off = section.starts_with("demo") && !app.demo;
            let style = if demo_off { theme::dim() } else { theme::header() };
            lines.push(Line::styled(format!(" {section}"), style));
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
    let total = lines.len();
    let shown = total.min(usize::from(area.height.saturating_sub(2)));
    let scroll = app.help_scroll.min(total - shown);
    hits.help_lines = Some((shown, total));
    let height = u16::try_from(shown + 2).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let mut extra = vec![Span::styled("Esc or ? closes ", theme::dim())];
    if shown < total {
        let arrows = match (scroll > 0, scroll + shown < total) {
            (true, true) => "↑↓",
            (true, false) => "↑",
            _ => "↓",
        };
        extra.push(Span::styled(format!("· {}–{} of {total} {arrows} ", scroll + 1, scroll + shown), theme::info()));
    }
    let outer = block(title("keys", extra));
    let visible: Vec<Line<'_>> = lines.into_iter().skip(scroll).take(shown).collect();
    frame.render_widget(Paragraph::new(visible).block(outer), popup);
}
