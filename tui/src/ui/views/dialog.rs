//! An action's plan in a centred popup: the action, each move, the notes
//! and the effect on headroom (DESIGN §6: every action is first a plan).
//! Enter or `y` confirms, Esc or `n` cancels; a what-if plan is only read.
//! A long plan scrolls between its fixed first and last lines.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ringwatch_shared::plan::{DataImpact, Move, MoveKind, Plan, describe};

use crate::ui::format;
use crate::ui::state::{Hits, PlanDialog};
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// The narrowest the dialog gets (when the screen allows).
const MIN_WIDTH: u16 = 48;

/// Draws `dialog` centred over `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, dialog: &PlanDialog, hits: &mut Hits) {
    let plan = &dialog.plan;
    let max_width = area.width.saturating_sub(4).max(MIN_WIDTH.min(area.width));
    // Text width inside the border and a space of padding on each side.
    let text_room = usize::from(max_width.saturating_sub(4));
    let head: Vec<Line<'static>> =
        wrap(&plan.action, text_room).into_iter().map(|line| Line::styled(line, theme::title())).collect();
    let body = body_lines(plan, text_room);
    let before = Span::styled(
        describe(plan.headroom_before),
        theme::headroom(plan.headroom_before.failures_survived, plan.headroom_before.capacity_ok),
    );
    let after = Span::styled(
        describe(plan.headroom_after),
        theme::headroom(plan.headroom_after.failures_survived, plan.headroom_after.capacity_ok),
    );
    let lead = Span::styled("headroom: ", theme::dim());
    let one_line = Line::from(vec![lead.clone(), before.clone(), Span::styled(" → ", theme::dim()), after.clone()]);
    // Before and after one under the other when they do not fit side by side.
    let headroom = if one_line.width() <= text_room {
        vec![one_line]
    } else {
        vec![Line::from(vec![lead, before]), Line::from(vec![Span::styled("        → ", theme::dim()), after])]
    };
    let widest = head.iter().chain(&body).chain(&headroom).map(Line::width).max().unwrap_or(0);
    let width = u16::try_from(widest + 4).unwrap_or(u16::MAX).clamp(MIN_WIDTH.min(max_width), max_width);

    // Border, the action, a gap, the moves and notes, a gap, headroom.
    let fixed = head.len() + 4 + headroom.len();
    let room = usize::from(area.height.saturating_sub(2)).saturating_sub(fixed).max(1);
    let shown = body.len().min(room);
    let scroll = dialog.scroll.min(body.len() - shown);
    hits.dialog_lines = Some((shown, body.len()));

    let mut lines: Vec<Line<'static>> = head;
    lines.push(Line::raw(""));
    lines.extend(body.iter().skip(scroll).take(shown).cloned());
    lines.push(Line::raw(""));
    lines.extend(headroom);
    let lines: Vec<Line<'static>> = lines.into_iter().map(pad).collect();

    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    let (name, style) = if dialog.read_only() { ("what-if", theme::info()) } else { ("confirm", theme::title()) };
    let mut extra = vec![Span::styled("plan ", theme::dim())];
    if shown < body.len() {
        let more = if scroll + shown < body.len() { " ↓" } else { "" };
        let less = if scroll > 0 { " ↑" } else { "" };
        extra.push(Span::styled(
            format!("· lines {}–{} of {}{less}{more} ", scroll + 1, scroll + shown, body.len()),
            theme::info(),
        ));
    }
    let mut heading = title(name, extra);
    heading.spans[0].style = style;
    let keys = if dialog.read_only() {
        Line::from(vec![
            Span::styled(" read-only · ", theme::dim()),
            Span::styled("Esc", theme::key()),
            Span::styled(" closes ", theme::dim()),
        ])
    } else {
        Line::from(vec![
            Span::styled(" Enter", theme::key()),
            Span::styled("/", theme::dim()),
            Span::styled("y", theme::key()),
            Span::styled(" confirm · ", theme::dim()),
            Span::styled("Esc", theme::key()),
            Span::styled("/", theme::dim()),
            Span::styled("n", theme::key()),
            Span::styled(" cancel ", theme::dim()),
        ])
    };
    let outer = block(heading).title_bottom(keys.right_aligned());
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(outer), popup);
}

/// The moves, then the notes, wrapped to `room` cells.
fn body_lines(plan: &Plan, room: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if plan.moves.is_empty() {
        lines.push(Line::styled("(no moves)", theme::dim()));
    }
    let id_width = plan.moves.iter().map(|step| step.instance.chars().count()).max().unwrap_or(0);
    lines.extend(plan.moves.iter().map(|step| move_line(step, id_width)));
    for note in &plan.notes {
        for (index, line) in wrap(note, room.saturating_sub(6)).into_iter().enumerate() {
            let lead = if index == 0 { "note: " } else { "      " };
            lines.push(Line::from(vec![Span::styled(lead, theme::dim()), Span::styled(line, theme::info())]));
        }
    }
    if let Some(data) = &plan.data {
        lines.extend(data_lines(data, room));
    }
    lines
}

/// A what-if's data figures (README.md, "Data"): what the node holds, then
/// what its failure would do, coloured by how bad it is.
fn data_lines(data: &DataImpact, room: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (index, text) in data.lines().into_iter().enumerate() {
        let style = if index == 0 {
            Style::new()
        } else if text.contains("unavailable") {
            theme::error()
        } else if text.contains("below quorum") {
            theme::info()
        } else {
            theme::ok()
        };
        for (part, line) in wrap(&text, room.saturating_sub(6)).into_iter().enumerate() {
            let lead = if index == 0 && part == 0 { "data: " } else { "      " };
            lines.push(Line::from(vec![Span::styled(lead, theme::dim()), Span::styled(line, style)]));
        }
    }
    lines
}

/// One move: `migrate web/0  a → b`, `start web/1  on c`, `restart web/0
/// on a`, `stop web/0  on a`.
fn move_line(step: &Move, id_width: usize) -> Line<'static> {
    let place = |node: &Option<String>| node.clone().unwrap_or_else(|| "-".to_string());
    let (word, mut rest) = match step.kind {
        MoveKind::Start => ("start", vec![Span::styled("on ", theme::dim()), Span::raw(place(&step.to))]),
        MoveKind::Migrate => (
            "migrate",
            vec![Span::raw(place(&step.from)), Span::styled(" → ", theme::dim()), Span::raw(place(&step.to))],
        ),
        MoveKind::Restart => ("restart", vec![Span::styled("on ", theme::dim()), Span::raw(place(&step.from))]),
        MoveKind::Stop => ("stop", vec![Span::styled("on ", theme::dim()), Span::raw(place(&step.from))]),
    };
    let mut spans =
        vec![Span::styled(format!("{word:<8}"), theme::key()), Span::raw(format!("{:<id_width$}  ", step.instance))];
    spans.append(&mut rest);
    Line::from(spans)
}

/// A line with a space of padding on the left.
fn pad(line: Line<'static>) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    spans.extend(line.spans);
    Line::from(spans).style(line.style)
}

/// `text` broken at spaces into lines of at most `width` characters (longer
/// words are cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let needed =
            if line.is_empty() { word.chars().count() } else { line.chars().count() + 1 + word.chars().count() };
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            line = line.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|line| format::truncate(&line, width)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_long_words() {
        assert_eq!(wrap("a bb ccc dddd", 8), ["a bb ccc", "dddd"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("abcdefghijkl", 8), ["abcdefgh", "ijkl"]);
        for line in wrap("web/1 has nowhere to go: no eligible node without an instance of its task", 20) {
            assert!(line.chars().count() <= 20, "{line}");
        }
    }
}
