//! The event log, newest at the bottom like a log tail. It follows new
//! events unless scrolled back; the filter matches node names and text.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::ui::format;
use crate::ui::state::{App, EventRow, Hits};
use crate::ui::theme;
use crate::ui::views::{block, title};

/// The widest a node name column gets.
const NODE_WIDTH: (usize, usize) = (4, 20);

/// Draws the log in `area`; `full` is the full-screen variant (with event
/// numbers).
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits, full: bool) {
    let mut extra = vec![Span::styled(format!("{} kept ", format::count(app.events.len())), theme::dim())];
    if app.event_scroll > 0 {
        extra.push(Span::styled(format!("· {} back (End follows) ", format::count(app.event_scroll)), theme::info()));
    }
    if !app.filter.is_empty() {
        extra.push(Span::styled("· filter ", theme::dim()));
        extra.push(Span::styled(format!("\"{}\" ", app.filter), theme::key()));
    }
    if app.events_missed > 0 {
        let missed = usize::try_from(app.events_missed).unwrap_or(usize::MAX);
        extra.push(Span::styled(format!("· {} missed in bursts ", format::count(missed)), theme::info()));
    }
    extra.push(Span::styled("· UTC ", theme::dim()));
    let outer = block(title("events", extra));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if inner.is_empty() {
        return;
    }
    let height = usize::from(inner.height);
    let mut shown: Vec<&EventRow> = app.filtered_events().skip(app.event_scroll).take(height).collect();
    shown.reverse();
    hits.events = Some((inner, height));
    if shown.is_empty() {
        let text = if app.events.is_empty() { "no events yet" } else { "no event matches the filter (Esc clears it)" };
        frame.render_widget(Paragraph::new(Line::styled(text, theme::dim())), inner);
        return;
    }
    let node_width = shown
        .iter()
        .filter_map(|event| event.node.as_deref())
        .map(|node| node.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(NODE_WIDTH.0, NODE_WIDTH.1);
    let seq_width = shown.last().map_or(1, |event| event.seq.to_string().len());
    let lines: Vec<Line<'_>> = shown.iter().map(|event| line(event, node_width, full.then_some(seq_width))).collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One event as a line: time, number (full view), node, change, reason.
fn line(event: &EventRow, node_width: usize, seq_width: Option<usize>) -> Line<'_> {
    let mut spans = vec![Span::styled(format!("{} ", format::utc_time(event.at_unix_ms)), theme::dim())];
    if let Some(width) = seq_width {
        spans.push(Span::styled(format!("#{:<width$} ", event.seq), theme::dim()));
    }
    let node_style = match event.change {
        Some((_, to)) => theme::state_style(to),
        None => Style::new(),
    }
    .add_modifier(Modifier::BOLD);
    match &event.node {
        Some(node) => {
            let node = format::truncate(node, node_width);
            spans.push(Span::styled(format!("{node:<node_width$} "), node_style));
        }
        None => spans.push(Span::raw(format!("{:<node_width$} ", "-"))),
    }
    if let Some((from, to)) = event.change {
        spans.push(Span::styled(from.as_str(), theme::state_style(from)));
        spans.push(Span::styled(" → ", theme::dim()));
        spans.push(Span::styled(to.as_str(), theme::state_style(to)));
        spans.push(Span::styled(": ", theme::dim()));
    }
    spans.push(Span::raw(event.reason.as_str()));
    Line::from(spans)
}
