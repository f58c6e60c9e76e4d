//! What a terminal smaller than 80×24 shows instead of a garbled layout.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::ui::state::MIN_SIZE;
use crate::ui::theme;
use crate::ui::views::centered;

/// Draws the message centred in `area` (wrapped when even it is too wide).
pub fn draw(frame: &mut Frame<'_>, area: Rect) {
    if area.is_empty() {
        return;
    }
    let text = format!("terminal too small (need {}×{}, have {}×{})", MIN_SIZE.0, MIN_SIZE.1, area.width, area.height);
    let width = u16::try_from(text.chars().count()).unwrap_or(u16::MAX).min(area.width);
    let height =
        u16::try_from(text.chars().count().div_ceil(usize::from(width.max(1)))).unwrap_or(u16::MAX).min(area.height);
    let hint = Line::styled("enlarge the window, or press q to quit", theme::dim()).centered();
    let message = Paragraph::new(vec![Line::styled(text, theme::error()).centered(), hint]).wrap(Wrap { trim: true });
    let box_height = if usize::from(area.width) >= 40 && area.height > height { height + 1 } else { height };
    frame.render_widget(message, centered(area, width, box_height));
}
