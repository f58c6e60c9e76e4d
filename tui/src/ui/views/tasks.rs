//! Tasks and their instances. Each task has a row (instances running of
//! replicas wanted, what its other instances are doing, restarts, the
//! nodes it runs on), followed by a row per instance (its state in its
//! colour, its node in the node's). Only the rows on screen are built.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use ringwatch_shared::status::NodeState;

use crate::ui::format;
use crate::ui::state::{App, Hits, InstanceRow, TableHit, TaskItem, TaskRow};
use crate::ui::theme;
use crate::ui::views::nodes::scroll_offset;
use crate::ui::views::{block, centered, title};

/// The symbol before the selected row.
const HIGHLIGHT: &str = "▶ ";

/// Instances are indented under their task.
const INDENT: &str = "  ";

/// The smallest and largest width of the name column.
const NAME_WIDTH: (u16, u16) = (15, 32);

/// Instance states from the most to the least worrying, for a task's
/// summary.
const STATE_ORDER: [&str; 6] = ["failed", "restarting", "starting", "pending", "stopping", "stopped"];

/// Draws the tasks view in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits) {
    let mut extra = vec![Span::styled(
        format!(
            "{} · {} instance{} ",
            format::count(app.tasks.len()),
            format::count(app.instances),
            if app.instances == 1 { "" } else { "s" }
        ),
        theme::dim(),
    )];
    if !app.filter.is_empty() {
        extra.push(Span::styled("· filter ", theme::dim()));
        extra.push(Span::styled(format!("\"{}\" ", app.filter), theme::key()));
    }
    let outer = block(title("tasks", extra));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if inner.height < 2 || inner.width < 10 {
        return;
    }
    if app.tasks.is_empty() {
        let lines = vec![
            Line::styled("no tasks yet", theme::title()).centered(),
            Line::styled("`ringwatch task apply FILE` adds some; instances and placement appear here", theme::dim())
                .centered(),
        ];
        frame.render_widget(Paragraph::new(lines), centered(inner, inner.width, 2));
        return;
    }
    let rows_area = Rect { y: inner.y + 1, height: inner.height - 1, ..inner };
    let visible = usize::from(rows_area.height);
    let shown = app.task_items.len();
    let offset = scroll_offset(app.task_offset, app.task_cursor, visible, shown);
    hits.tasks = Some(TableHit { rows: rows_area, offset });
    let header = Row::new(vec![
        Cell::from("TASK / INSTANCE"),
        Cell::from(Line::from("READY").right_aligned()),
        Cell::from("STATE"),
        Cell::from(Line::from("RESTARTS").right_aligned()),
        Cell::from("NODE"),
    ])
    .style(theme::header());
    if shown == 0 {
        let message = Paragraph::new(Line::styled("no task matches the filter (Esc clears it)", theme::dim()));
        frame.render_widget(message.centered(), centered(rows_area, rows_area.width, 1));
        let table = Table::new(Vec::<Row<'_>>::new(), widths(NAME_WIDTH.0)).header(header);
        frame.render_widget(table.highlight_spacing(HighlightSpacing::Always).highlight_symbol(HIGHLIGHT), inner);
        return;
    }
    let end = (offset + visible).min(shown);
    let page: Vec<(&TaskRow, Option<&InstanceRow>)> =
        app.task_items[offset..end].iter().filter_map(|&item: &TaskItem| app.task_item(item)).collect();
    let name_cap = (inner.width / 3).clamp(NAME_WIDTH.0, NAME_WIDTH.1);
    let name_width = page
        .iter()
        .map(|(task, instance)| match instance {
            Some(instance) => INDENT.len() + instance.id.chars().count(),
            None => task.name.chars().count(),
        })
        .max()
        .map_or(NAME_WIDTH.0, |width| u16::try_from(width).unwrap_or(u16::MAX))
        .clamp(NAME_WIDTH.0, name_cap);
    let rows = page.iter().map(|&(task, instance)| match instance {
        Some(instance) => instance_row(instance, usize::from(name_width)),
        None => task_row(task, usize::from(name_width)),
    });
    let table = Table::new(rows, widths(name_width))
        .header(header)
        .column_spacing(2)
        .row_highlight_style(theme::selected_row())
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(app.task_cursor.checked_sub(offset));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// Name, ready, state, restarts, then the nodes, which take the rest: a
/// task's list of nodes is the one open-ended cell.
fn widths(name_width: u16) -> [Constraint; 5] {
    [
        Constraint::Length(name_width),
        Constraint::Length(5),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Fill(1),
    ]
}

/// A task's row: ready count, its nodes, its instances that do not run.
fn task_row(task: &TaskRow, name_width: usize) -> Row<'static> {
    let ready_style = if task.running >= task.replicas as usize { theme::ok() } else { theme::error() };
    let mut nodes: Vec<Span<'static>> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for instance in &task.instances {
        if let Some(node) = instance.node.as_deref()
            && !seen.contains(&node)
        {
            seen.push(node);
            if !nodes.is_empty() {
                nodes.push(Span::raw(" "));
            }
            nodes.push(Span::styled(node.to_string(), node_style(instance.node_state)));
        }
    }
    let unplaced = task.instances.iter().filter(|instance| instance.node.is_none()).count();
    if unplaced > 0 {
        let separator = if nodes.is_empty() { "" } else { " " };
        nodes.push(Span::styled(format!("{separator}+{unplaced} unplaced"), theme::info()));
    }
    let mut summary: Vec<Span<'static>> = Vec::new();
    for state in STATE_ORDER {
        let count = task.instances.iter().filter(|instance| instance.state == state).count();
        if count > 0 {
            if !summary.is_empty() {
                summary.push(Span::raw(" "));
            }
            summary.push(Span::styled(format!("{count} {state}"), theme::instance_style(state)));
        }
    }
    if summary.is_empty() && task.running > 0 {
        summary.push(Span::styled("running", theme::instance_style("running")));
    }
    Row::new(vec![
        Cell::from(Span::styled(format::truncate(&task.name, name_width), theme::title())),
        Cell::from(Line::styled(format!("{}/{}", task.running, task.replicas), ready_style).right_aligned()),
        Cell::from(Line::from(summary)),
        Cell::from(Line::from(task.restarts.to_string()).right_aligned()),
        Cell::from(Line::from(nodes)),
    ])
}

/// An instance's row: its node (and the node's trouble), its state.
fn instance_row(instance: &InstanceRow, name_width: usize) -> Row<'static> {
    let id = format::truncate(&instance.id, name_width.saturating_sub(INDENT.len()));
    let node = match (&instance.node, instance.node_state) {
        (None, _) => Line::styled("-", theme::dim()),
        (Some(node), Some(state)) if state != NodeState::Alive => Line::from(vec![
            Span::styled(node.clone(), node_style(Some(state))),
            Span::styled(format!(" ({state})"), theme::state_style(state)),
        ]),
        (Some(node), state) => Line::styled(node.clone(), node_style(state)),
    };
    let restarts_style = if instance.restarts > 0 { theme::info() } else { Style::new() };
    Row::new(vec![
        Cell::from(format!("{INDENT}{id}")),
        Cell::from(""),
        Cell::from(Span::styled(instance.state.clone(), theme::instance_style(&instance.state))),
        Cell::from(Line::styled(instance.restarts.to_string(), restarts_style).right_aligned()),
        Cell::from(node),
    ])
}

/// A node name in its state's colour (plain when the node is unknown).
fn node_style(state: Option<NodeState>) -> Style {
    state.map_or_else(Style::new, |state| Style::new().fg(theme::state_color(state)))
}
