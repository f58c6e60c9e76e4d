//! The overview: the ring beside the node table, the event log below.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use crate::ui::state::{App, Hits};
use crate::ui::views::{events, nodes, ring};

/// Draws the overview in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits) {
    let events_height = (area.height / 3).clamp(5, 12);
    let [top, log] = Layout::vertical([Constraint::Fill(1), Constraint::Length(events_height)]).areas(area);
    // The ring is round: its canvas is twice as many cells wide as tall,
    // but never takes more than two fifths of the width from the table.
    let ring_width = (top.height.saturating_sub(2) * 2 + 2).min(top.width * 2 / 5);
    let [ring_area, table_area] = Layout::horizontal([Constraint::Length(ring_width), Constraint::Fill(1)]).areas(top);
    ring::draw(frame, ring_area, app, hits);
    nodes::draw(frame, table_area, app, hits, false);
    events::draw(frame, log, app, hits, false);
}
