//! A centred list to pick one instance or node from, for `r` and `m`.
//! Typing narrows it, so a target among thousands of nodes is a few keys
//! away; only the rows on screen are built.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::ui::format;
use crate::ui::state::{Hits, PickFacts, PickItem, Picker, TableHit};
use crate::ui::theme;
use crate::ui::views::nodes::scroll_offset;
use crate::ui::views::{block, centered, title};

/// The widest the popup gets.
const MAX_WIDTH: u16 = 64;

/// Draws `picker` centred over `area`; `previous` is the first row the
/// last frame drew, so the list scrolls only as far as the cursor needs.
pub fn draw(frame: &mut Frame<'_>, area: Rect, picker: &Picker, previous: usize, hits: &mut Hits) {
    let matching: Vec<&PickItem> = picker.matching().collect();
    let width = MAX_WIDTH.min(area.width.saturating_sub(4)).max(area.width.min(30));
    // Border, the query line, at least one row.
    let list_rows = matching.len().max(1).min(usize::from(area.height.saturating_sub(5)).max(1));
    let height = u16::try_from(list_rows + 3).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    let count = if picker.query.is_empty() {
        format!("{} ", format::count(picker.items.len()))
    } else {
        format!("{} of {} ", format::count(matching.len()), format::count(picker.items.len()))
    };
    let keys = Line::from(vec![
        Span::styled(" type", theme::key()),
        Span::styled(" narrows · ", theme::dim()),
        Span::styled("Enter", theme::key()),
        Span::styled(" picks · ", theme::dim()),
        Span::styled("Esc", theme::key()),
        Span::styled(" cancels ", theme::dim()),
    ]);
    let outer = block(title(&picker.title, Vec::new())).title_bottom(keys.right_aligned());
    let inner = outer.inner(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(outer, popup);
    if inner.height < 2 {
        return;
    }
    let query = Line::from(vec![
        Span::styled(" › ", theme::key()),
        Span::raw(picker.query.as_str()),
        Span::styled("█", theme::key()),
    ]);
    let query_area = Rect { height: 1, ..inner };
    frame.render_widget(Paragraph::new(query), query_area);
    frame.render_widget(Paragraph::new(Line::styled(count, theme::dim()).right_aligned()), query_area);
    let list = Rect { y: inner.y + 1, height: inner.height - 1, ..inner };
    let visible = usize::from(list.height);
    let offset = scroll_offset(previous, picker.cursor, visible, matching.len());
    hits.picker = Some(TableHit { rows: list, offset });
    if matching.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled("   nothing matches", theme::dim())), list);
        return;
    }
    let name_width = matching
        .iter()
        .skip(offset)
        .take(visible)
        .map(|item| item.value.chars().count())
        .max()
        .unwrap_or(0)
        .min(usize::from(list.width / 2));
    let lines: Vec<Line<'static>> = matching
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(index, item)| item_line(item, name_width, index == picker.cursor, usize::from(list.width)))
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
}

fn item_line(item: &PickItem, name_width: usize, selected: bool, width: usize) -> Line<'static> {
    let name = format::truncate(&item.value, name_width);
    let mut spans = vec![Span::raw(if selected { " ▶ " } else { "   " }), Span::raw(format!("{name:<name_width$}  "))];
    match &item.facts {
        PickFacts::Instance { state, node } => {
            spans.push(Span::styled(state.clone(), theme::instance_style(state)));
            if let Some(node) = node {
                spans.push(Span::styled(format!(" on {node}"), theme::dim()));
            }
        }
        PickFacts::Node { state, instances, cpu_percent } => {
            spans.push(Span::styled(state.as_str(), theme::state_style(*state)));
            spans.push(Span::styled(
                format!(" · {instances} inst · cpu {}", format::percent(*cpu_percent)),
                theme::dim(),
            ));
        }
    }
    let line = Line::from(spans);
    if selected {
        // The whole row as one bar, like the tables' selection.
        let used = line.width();
        let mut spans = line.spans.into_iter().map(|span| span.style(Style::new())).collect::<Vec<_>>();
        spans.push(Span::raw(" ".repeat(width.saturating_sub(used))));
        Line::from(spans).style(theme::selected_row())
    } else {
        line
    }
}
