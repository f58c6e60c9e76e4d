//! Keys and mouse: each input changes the [`App`] and may ask for an
//! [`Action`] the loop carries out. Pure (no terminal, no console), so every
//! binding is unit-tested.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use crate::handle::{Command, DemoAction};
use crate::ui::ring::{EDGE_MARGIN, angle_at};
use crate::ui::state::{App, MessageKind, View};

/// What the loop must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Send this command to the console; its outcome goes to the status line.
    Command(Command),
}

/// The status line for the action keys that need tasks.
pub const NEEDS_TASKS: &str = "needs tasks: restart/migrate/drain/cordon/what-if arrive with workloads";

/// Rows a page key moves when no table was drawn yet.
const DEFAULT_PAGE: usize = 10;

/// Handles any terminal input.
pub fn handle_event(app: &mut App, event: &Event) -> Action {
    match event {
        Event::Key(key) => handle_key(app, *key),
        Event::Mouse(mouse) => handle_mouse(app, *mouse),
        _ => Action::None,
    }
}

/// Handles a key.
pub fn handle_key(app: &mut App, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if app.filter_editing {
        edit_filter(app, key);
        return Action::None;
    }
    if app.help {
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Enter => app.help = false,
            _ => {}
        }
        return Action::None;
    }
    if ctrl || key.modifiers.contains(KeyModifiers::ALT) {
        return Action::None;
    }
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') => app.help = true,
        KeyCode::Up | KeyCode::Char('k') => step(app, -1),
        KeyCode::Down | KeyCode::Char('j') => step(app, 1),
        KeyCode::PageUp => step(app, -page(app)),
        KeyCode::PageDown => step(app, page(app)),
        KeyCode::Home | KeyCode::Char('g') => step(app, isize::MIN / 2),
        KeyCode::End | KeyCode::Char('G') => step(app, isize::MAX / 2),
        KeyCode::Enter => open_detail(app),
        KeyCode::Esc => back(app),
        KeyCode::Tab => switch_view(app, next_tab(app.view, 1)),
        KeyCode::BackTab => switch_view(app, next_tab(app.view, View::TABS.len() - 1)),
        KeyCode::Char(digit @ '1'..='4') => {
            let index = usize::from(digit as u8 - b'1');
            switch_view(app, View::TABS[index]);
        }
        KeyCode::Char('/') => app.filter_editing = true,
        KeyCode::Char('s') => {
            app.sort = app.sort.next();
            app.refresh_order();
        }
        KeyCode::Char('S') => {
            app.reversed = !app.reversed;
            app.refresh_order();
        }
        KeyCode::Char('r' | 'm' | 'd' | 'c' | 'w') => app.set_message(NEEDS_TASKS, MessageKind::Info),
        KeyCode::Char('x') => return demo(app, DemoAction::Crash),
        KeyCode::Char('p') => return demo(app, DemoAction::Partition),
        KeyCode::Char('t') => return demo(app, DemoAction::Stall),
        KeyCode::Char('h') => return demo(app, DemoAction::Heal),
        _ => {}
    }
    Action::None
}

/// Handles a mouse event: the wheel moves, a left click selects.
pub fn handle_mouse(app: &mut App, mouse: MouseEvent) -> Action {
    match mouse.kind {
        MouseEventKind::ScrollDown if !app.help => step(app, 1),
        MouseEventKind::ScrollUp if !app.help => step(app, -1),
        MouseEventKind::Down(MouseButton::Left) => click(app, mouse.column, mouse.row),
        _ => {}
    }
    Action::None
}

fn edit_filter(app: &mut App, key: KeyEvent) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Enter => app.filter_editing = false,
        KeyCode::Esc => {
            app.filter_editing = false;
            set_filter(app, String::new());
        }
        KeyCode::Backspace => {
            let mut filter = app.filter.clone();
            filter.pop();
            set_filter(app, filter);
        }
        KeyCode::Char('u') if ctrl => set_filter(app, String::new()),
        KeyCode::Char(c) if !ctrl && !c.is_control() => {
            let mut filter = app.filter.clone();
            filter.push(c);
            set_filter(app, filter);
        }
        _ => {}
    }
}

fn set_filter(app: &mut App, filter: String) {
    if app.filter != filter {
        app.filter = filter;
        app.event_scroll = 0;
        app.refresh_order();
    }
}

/// Moves the selection (or, in the event view, the scroll position) by
/// `delta`: down is positive.
fn step(app: &mut App, delta: isize) {
    match app.view {
        View::Events => {
            // Down is newer, towards the bottom where the log ends.
            let matching = app.filtered_events().count();
            let scroll = app.event_scroll.saturating_add_signed(-delta);
            app.event_scroll = scroll.min(matching.saturating_sub(1));
        }
        View::Tasks => {}
        View::Overview | View::Nodes | View::Detail => app.move_selection(delta),
    }
}

fn page(app: &App) -> isize {
    let rows = match app.view {
        View::Events => app.hits.events.map(|(_, shown)| shown),
        _ => app.hits.table.map(|table| usize::from(table.rows.height)),
    };
    isize::try_from(rows.unwrap_or(DEFAULT_PAGE).max(1)).unwrap_or(1)
}

fn open_detail(app: &mut App) {
    if matches!(app.view, View::Overview | View::Nodes) && app.selected.is_some() {
        app.back = app.view;
        app.view = View::Detail;
    }
}

fn back(app: &mut App) {
    if app.view == View::Detail {
        app.view = app.back;
    } else if !app.filter.is_empty() {
        set_filter(app, String::new());
    } else {
        app.message = None;
    }
}

fn next_tab(view: View, by: usize) -> View {
    let current = View::TABS.iter().position(|&tab| tab == view).unwrap_or(0);
    View::TABS[(current + by) % View::TABS.len()]
}

fn switch_view(app: &mut App, view: View) {
    app.view = view;
}

fn demo(app: &mut App, action: DemoAction) -> Action {
    if !app.demo {
        app.set_message("x/p/t/h inject faults in `ringwatch demo` only", MessageKind::Info);
        return Action::None;
    }
    match app.selected.clone() {
        Some(node) => Action::Command(Command::Demo { node, action }),
        None => {
            app.set_message("select a node first", MessageKind::Info);
            Action::None
        }
    }
}

fn click(app: &mut App, column: u16, row: u16) {
    if app.help {
        app.help = false;
        return;
    }
    let position = (column, row).into();
    if let Some(&(_, view)) = app.hits.tabs.iter().find(|(area, _)| area.contains(position)) {
        switch_view(app, view);
        return;
    }
    if let Some(table) = app.hits.table
        && table.rows.contains(position)
    {
        let index = table.offset + usize::from(row - table.rows.y);
        if index < app.order.len() {
            app.select_position(index);
        }
        return;
    }
    if let Some(ring) = app.hits.ring
        && let Some((x, y)) = ring.bounds.cell_center(ring.area, column, row)
    {
        // Only clicks on or near the ring itself: the middle shows a label.
        let distance = x.hypot(y);
        let radius = ring.bounds.radius();
        if distance < radius * 0.4 || distance > radius + EDGE_MARGIN + 1.0 {
            return;
        }
        if let Some(owner) = app.ring.owner_at(angle_at(x, y)).map(str::to_string)
            && !app.select_name(&owner)
        {
            app.set_message(format!("node \"{owner}\" is hidden by the filter (Esc clears it)"), MessageKind::Info);
        }
    }
}
