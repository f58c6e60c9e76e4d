//! The node table. Only the rows on screen are built, so it costs the same
//! with 5 nodes or 5,000; columns are dropped by priority when narrow.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use ringwatch_shared::status::NodeState;

use crate::ui::format;
use crate::ui::state::{App, Hits, NodeRow, TableHit};
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// The symbol before the selected row.
const HIGHLIGHT: &str = "▶ ";

/// One table column.
struct Column {
    /// Its header.
    title: &'static str,
    /// Its width in cells (the name column grows beyond it).
    width: u16,
    /// Dropped before columns with a smaller number when space runs out.
    priority: u8,
    /// Numbers align right.
    right: bool,
    /// Only in the full-screen table.
    full_only: bool,
    /// Takes the width left over (the last, free-text column).
    grows: bool,
    /// Its cell for one node.
    cell: fn(&NodeRow) -> Span<'static>,
}

const COLUMNS: &[Column] = &[
    Column { title: "NAME", width: 0, priority: 0, right: false, full_only: false, grows: false, cell: name_cell },
    Column { title: "STATE", width: 9, priority: 0, right: false, full_only: false, grows: false, cell: state_cell },
    Column { title: "PHI", width: 5, priority: 1, right: true, full_only: false, grows: false, cell: phi_cell },
    Column { title: "SEEN", width: 5, priority: 3, right: true, full_only: false, grows: false, cell: seen_cell },
    Column { title: "CPU", width: 6, priority: 0, right: true, full_only: false, grows: false, cell: cpu_cell },
    Column { title: "MEM", width: 5, priority: 1, right: true, full_only: false, grows: false, cell: mem_percent_cell },
    Column { title: "USED/TOTAL", width: 10, priority: 4, right: true, full_only: false, grows: false, cell: mem_cell },
    Column { title: "LOAD", width: 5, priority: 5, right: true, full_only: false, grows: false, cell: load_cell },
    Column {
        title: "NET ↓/↑", width: 11, priority: 4, right: true, full_only: false, grows: false, cell: net_cell
    },
    Column { title: "SHARE", width: 6, priority: 2, right: true, full_only: false, grows: false, cell: share_cell },
    Column { title: "INST", width: 4, priority: 6, right: true, full_only: false, grows: false, cell: instances_cell },
    Column { title: "W", width: 3, priority: 7, right: true, full_only: false, grows: false, cell: weight_cell },
    Column { title: "LOST", width: 5, priority: 7, right: true, full_only: false, grows: false, cell: lost_cell },
    Column {
        title: "ADDRESS",
        width: 21,
        priority: 8,
        right: false,
        full_only: false,
        grows: false,
        cell: address_cell,
    },
    Column { title: "REASON", width: 12, priority: 9, right: false, full_only: true, grows: true, cell: reason_cell },
];

/// The smallest and largest width of the name column.
const NAME_WIDTH: (u16, u16) = (8, 28);

/// Draws the table in `area`; `full` is the full-screen variant with every
/// column.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits, full: bool) {
    let total = app.nodes.len();
    let shown = app.order.len();
    let mut extra = vec![Span::styled(
        if shown == total {
            format!("{} ", format::count(total))
        } else {
            format!("{}/{} ", format::count(shown), format::count(total))
        },
        theme::dim(),
    )];
    extra.push(Span::styled(
        format!("· sort {} {} ", app.sort.label(), if app.reversed { "↑" } else { "↓" }),
        theme::dim(),
    ));
    if !app.filter.is_empty() {
        extra.push(Span::styled("· filter ", theme::dim()));
        extra.push(Span::styled(format!("\"{}\" ", app.filter), theme::key()));
    }
    let outer = block(title("nodes", extra));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if inner.height < 2 || inner.width < 10 {
        return;
    }
    let rows_area = Rect { y: inner.y + 1, height: inner.height - 1, ..inner };
    let visible = usize::from(rows_area.height);
    let offset = scroll_offset(app.table_offset, app.cursor, visible, shown);
    hits.table = Some(TableHit { rows: rows_area, offset });
    if shown == 0 {
        let text = if total == 0 {
            "no nodes yet: agents appear here once they join"
        } else {
            "no node matches the filter (Esc clears it)"
        };
        let message = Paragraph::new(Line::styled(text, theme::dim())).centered();
        frame.render_widget(message, centered(rows_area, rows_area.width, 1));
        render_header_only(frame, inner, full);
        return;
    }
    let end = (offset + visible).min(shown);
    let page: Vec<&NodeRow> = app.order[offset..end].iter().filter_map(|&index| app.nodes.get(index)).collect();
    let available = inner.width.saturating_sub(u16::try_from(HIGHLIGHT.chars().count()).unwrap_or(0));
    // Narrow tables truncate long names rather than lose their numbers.
    let name_cap = if available < 70 { (available / 4).max(12) } else { NAME_WIDTH.1 };
    let name_width = page
        .iter()
        .map(|node| u16::try_from(node.name.chars().count()).unwrap_or(u16::MAX))
        .max()
        .unwrap_or(0)
        .clamp(NAME_WIDTH.0, name_cap);
    let columns = choose_columns(available, name_width, full);

    let header = Row::new(columns.iter().map(|column| header_cell(column))).style(theme::header());
    let rows = page.iter().map(|node| {
        // A node that is not up reports stale numbers: dim them.
        let style = if node.state.is_up() { Style::new() } else { theme::dim() };
        Row::new(columns.iter().map(|column| {
            let mut span = (column.cell)(node);
            if column.width == 0 {
                span.content = format::truncate(&span.content, usize::from(name_width)).into();
            }
            let line = if column.right { Line::from(span).right_aligned() } else { Line::from(span) };
            Cell::from(Text::from(line))
        }))
        .style(style)
    });
    let widths = columns.iter().map(|column| constraint(column, name_width));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme::selected_row())
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(app.cursor.checked_sub(offset));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn render_header_only(frame: &mut Frame<'_>, inner: Rect, full: bool) {
    let available = inner.width.saturating_sub(2);
    let columns = choose_columns(available, NAME_WIDTH.0, full);
    let widths = columns.iter().map(|column| constraint(column, NAME_WIDTH.0));
    let table = Table::new(Vec::<Row<'_>>::new(), widths)
        .header(Row::new(columns.iter().map(|column| header_cell(column))).style(theme::header()))
        .column_spacing(1)
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always);
    frame.render_widget(table, Rect { height: 1, ..inner });
}

fn constraint(column: &Column, name_width: u16) -> Constraint {
    match (column.width, column.grows) {
        (0, _) => Constraint::Length(name_width),
        (width, true) => Constraint::Min(width),
        (width, false) => Constraint::Length(width),
    }
}

fn header_cell(column: &Column) -> Cell<'static> {
    let line = Line::from(column.title);
    Cell::from(if column.right { line.right_aligned() } else { line })
}

/// The columns that fit in `width` cells, in table order: by priority,
/// then left to right.
fn choose_columns(width: u16, name_width: u16, full: bool) -> Vec<&'static Column> {
    let candidates: Vec<&Column> = COLUMNS.iter().filter(|column| full || !column.full_only).collect();
    let mut by_priority: Vec<usize> = (0..candidates.len()).collect();
    by_priority.sort_by_key(|&index| (candidates[index].priority, index));
    let mut chosen = vec![false; candidates.len()];
    let mut used: u16 = 0;
    for index in by_priority {
        let column = candidates[index];
        let needed = if column.width == 0 { name_width } else { column.width };
        let spacing = u16::from(used > 0);
        if used + spacing + needed <= width {
            used += spacing + needed;
            chosen[index] = true;
        } else if column.priority == 0 {
            // The essentials always show, squeezed if need be.
            used = used.saturating_add(spacing + needed);
            chosen[index] = true;
        }
    }
    candidates.into_iter().zip(chosen).filter_map(|(column, chosen)| chosen.then_some(column)).collect()
}

/// The first row to draw so that `selected` is visible, moving as little
/// as possible from `previous`.
pub fn scroll_offset(previous: usize, selected: usize, visible: usize, len: usize) -> usize {
    if visible == 0 || len == 0 {
        return 0;
    }
    let max_offset = len.saturating_sub(visible);
    let mut offset = previous.min(max_offset);
    if selected < offset {
        offset = selected;
    } else if selected >= offset + visible {
        offset = selected + 1 - visible;
    }
    offset.min(max_offset)
}

fn name_cell(node: &NodeRow) -> Span<'static> {
    Span::styled(node.name.clone(), Style::new().fg(theme::state_color(node.state)))
}

fn state_cell(node: &NodeRow) -> Span<'static> {
    let text = if node.cordoned { format!("{}⊘", node.state) } else { node.state.to_string() };
    Span::styled(text, theme::state_style(node.state))
}

fn phi_cell(node: &NodeRow) -> Span<'static> {
    let style = if node.phi >= 8.0 {
        theme::state_style(NodeState::Failed)
    } else if node.phi >= 5.0 {
        theme::state_style(NodeState::Suspect)
    } else {
        Style::new()
    };
    Span::styled(format::phi(node.phi), style)
}

fn seen_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(format::ago(node.last_seen_ms))
}

fn cpu_cell(node: &NodeRow) -> Span<'static> {
    if !node.state.is_up() {
        return Span::raw(format::percent(node.cpu_percent));
    }
    Span::styled(format::percent(node.cpu_percent), Style::new().fg(theme::usage_color(node.cpu_percent)))
}

fn mem_percent_cell(node: &NodeRow) -> Span<'static> {
    if node.mem_total == 0 {
        return Span::styled("-", theme::dim());
    }
    let percent = node.mem_percent();
    if !node.state.is_up() {
        return Span::raw(format!("{percent:.0}%"));
    }
    Span::styled(format!("{percent:.0}%"), Style::new().fg(theme::usage_color(percent)))
}

fn mem_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(format::used_of(node.mem_used, node.mem_total))
}

fn load_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(format!("{:.2}", node.load[0]))
}

fn net_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(format::rx_tx(node.rx, node.tx))
}

fn share_cell(node: &NodeRow) -> Span<'static> {
    if node.ring_index.is_none() {
        return Span::styled("-", theme::dim());
    }
    Span::raw(format::percent(node.share * 100.0))
}

fn instances_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(node.instances.len().to_string())
}

fn weight_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(node.weight.to_string())
}

fn lost_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(node.heartbeats_lost.to_string())
}

fn reason_cell(node: &NodeRow) -> Span<'static> {
    Span::raw(node.reason.clone())
}

fn address_cell(node: &NodeRow) -> Span<'static> {
    if node.address.is_empty() { Span::styled("-", theme::dim()) } else { Span::raw(node.address.clone()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrolling_keeps_the_selection_visible_and_moves_little() {
        assert_eq!(scroll_offset(0, 0, 10, 100), 0);
        assert_eq!(scroll_offset(0, 9, 10, 100), 0);
        assert_eq!(scroll_offset(0, 10, 10, 100), 1, "one past the bottom scrolls by one");
        assert_eq!(scroll_offset(50, 45, 10, 100), 45, "above the top scrolls up to it");
        assert_eq!(scroll_offset(50, 55, 10, 100), 50, "inside the window: no move");
        assert_eq!(scroll_offset(95, 99, 10, 100), 90, "never past the end");
        assert_eq!(scroll_offset(7, 0, 0, 100), 0);
        assert_eq!(scroll_offset(7, 0, 10, 0), 0);
        assert_eq!(scroll_offset(7, 3, 10, 5), 0, "all fit");
    }

    #[test]
    fn narrow_tables_drop_columns_by_priority() {
        let narrow: Vec<&str> = choose_columns(40, 10, false).iter().map(|column| column.title).collect();
        assert_eq!(narrow, ["NAME", "STATE", "PHI", "CPU", "MEM"]);
        let wide: Vec<&str> = choose_columns(200, 10, false).iter().map(|column| column.title).collect();
        assert!(wide.contains(&"NET ↓/↑") && wide.contains(&"ADDRESS") && !wide.contains(&"REASON"));
        let full: Vec<&str> = choose_columns(200, 10, true).iter().map(|column| column.title).collect();
        assert!(full.contains(&"REASON"));
        let tiny: Vec<&str> = choose_columns(5, 10, false).iter().map(|column| column.title).collect();
        assert_eq!(tiny, ["NAME", "STATE", "CPU"], "the essentials stay");
    }
}
