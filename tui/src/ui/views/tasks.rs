//! Tasks and their instances. Until workloads arrive the list is empty and
//! the view says so.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::ui::state::App;
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// Draws the tasks view in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let extra = vec![Span::styled(format!("{} ", app.tasks.len()), theme::dim())];
    let outer = block(title("tasks", extra));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if app.tasks.is_empty() {
        let lines = vec![
            Line::styled("no tasks yet", theme::title()).centered(),
            Line::styled("tasks, instances, restarts and placement appear here once workloads arrive", theme::dim())
                .centered(),
        ];
        frame.render_widget(Paragraph::new(lines), centered(inner, inner.width, 2));
        return;
    }
    let rows = app.tasks.iter().take(usize::from(inner.height.saturating_sub(1))).map(|task| {
        let running = task.instances.iter().filter(|(_, _, state, _)| state == "running").count();
        let restarts: u32 = task.instances.iter().map(|(_, _, _, restarts)| restarts).sum();
        let placement = task
            .instances
            .iter()
            .map(|(id, node, state, _)| format!("{id}@{} {state}", node.as_deref().unwrap_or("-")))
            .collect::<Vec<_>>()
            .join(", ");
        let ready_style = if running as u64 >= u64::from(task.replicas) { theme::ok() } else { theme::error() };
        Row::new(vec![
            Cell::from(task.name.clone()),
            Cell::from(Line::styled(format!("{running}/{}", task.replicas), ready_style)),
            Cell::from(restarts.to_string()),
            Cell::from(placement),
        ])
    });
    let header = Row::new(["TASK", "RUNNING", "RESTARTS", "INSTANCES"]).style(theme::header());
    let widths = [Constraint::Length(20), Constraint::Length(8), Constraint::Length(8), Constraint::Fill(1)];
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}
