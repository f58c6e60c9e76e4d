//! Keys and mouse: each input changes the [`App`] and may ask for an
//! [`Action`] the loop carries out. Pure (no terminal, no console), so every
//! binding is unit-tested.
//!
//! Operator actions go in two steps: a key (or a `:` command) asks the loop
//! for the action's plan ([`Action::Plan`]), which opens the confirmation
//! dialog; Enter or `y` there turns it into [`Command::Act`]. The modal
//! parts take the keys first, most recent on top: the plan dialog, the
//! picker, the command line, the filter, the help.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ringwatch_shared::plan::OperatorAction;

use crate::handle::{Command, DemoAction};
use crate::ui::ring::{EDGE_MARGIN, angle_at};
use crate::ui::state::{App, MessageKind, PickFacts, PickItem, PickStep, Picker, PlanDialog, View, action_words};

/// What the loop must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Send this command to the console; its outcome goes to the status line.
    Command(Command),
    /// Ask the console for this action's plan and show it for confirmation
    /// ([`App::show_plan`]).
    Plan(OperatorAction),
}

/// The `:` commands: name, arguments and what they do (the help lists
/// them, the command line hints at them).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("resume", "", "resume automatic failover after a pause"),
    ("cordon", "NODE", "no new placements on NODE"),
    ("uncordon", "NODE", "undo a cordon"),
    ("drain", "NODE", "cordon NODE and move its instances away"),
    ("restart", "TASK[/INDEX]", "restart a task's instances, or one"),
    ("migrate", "TASK/INDEX NODE", "move one instance to NODE"),
    ("whatif", "NODE", "the plan if NODE failed now (read-only)"),
    ("q", "", "quit"),
];

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
    if app.dialog.is_some() {
        return dialog_key(app, key);
    }
    if app.picker.is_some() {
        return picker_key(app, key);
    }
    if app.command_line.is_some() {
        return command_key(app, key);
    }
    if app.filter_editing {
        edit_filter(app, key);
        return Action::None;
    }
    if app.help {
        help_key(app, key);
        return if key.code == KeyCode::Char('q') { Action::Quit } else { Action::None };
    }
    if ctrl || key.modifiers.contains(KeyModifiers::ALT) {
        return Action::None;
    }
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') => {
            app.help = true;
            app.help_scroll = 0;
        }
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
        KeyCode::Char(':') => app.command_line = Some(String::new()),
        KeyCode::Char('s') => {
            app.sort = app.sort.next();
            app.refresh_order();
        }
        KeyCode::Char('S') => {
            app.reversed = !app.reversed;
            app.refresh_order();
        }
        KeyCode::Char('a') => {
            app.ring_colors = app.ring_colors.toggled();
            app.set_message(format!("ring arcs coloured by {}", app.ring_colors.label()), MessageKind::Info);
        }
        KeyCode::Char('r') => return restart(app),
        KeyCode::Char('m') => return migrate(app),
        KeyCode::Char('d') => return node_action(app, |node, _| OperatorAction::Drain { node }),
        KeyCode::Char('c') => {
            return node_action(app, |node, cordoned| {
                if cordoned { OperatorAction::Uncordon { node } } else { OperatorAction::Cordon { node } }
            });
        }
        KeyCode::Char('w') => return node_action(app, |node, _| OperatorAction::WhatIf { node }),
        KeyCode::Char('x') => return demo(app, DemoAction::Crash),
        KeyCode::Char('p') => return demo(app, DemoAction::Partition),
        KeyCode::Char('t') => return demo(app, DemoAction::Stall),
        KeyCode::Char('h') => return demo(app, DemoAction::Heal),
        _ => {}
    }
    Action::None
}

/// Handles a mouse event: the wheel moves, a left click selects. Ignored
/// while a dialog, picker or the command line is open.
pub fn handle_mouse(app: &mut App, mouse: MouseEvent) -> Action {
    if app.dialog.is_some() || app.picker.is_some() || app.command_line.is_some() {
        return Action::None;
    }
    match mouse.kind {
        MouseEventKind::ScrollDown if !app.help => step(app, 1),
        MouseEventKind::ScrollUp if !app.help => step(app, -1),
        MouseEventKind::ScrollDown => scroll_help(app, 1),
        MouseEventKind::ScrollUp => scroll_help(app, -1),
        MouseEventKind::Down(MouseButton::Left) => click(app, mouse.column, mouse.row),
        _ => {}
    }
    Action::None
}

/// Parses a `:` command line (without the colon).
///
/// # Errors
/// A sentence for the status line: the usage of a known command given the
/// wrong arguments, or the list of commands for an unknown one.
pub fn parse_command(line: &str) -> Result<Parsed, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else {
        return Err("type a command: :resume, :drain NODE, … (? lists them)".into());
    };
    let node = |node: &&str| (*node).to_string();
    let action = match (name, args) {
        ("q" | "quit", []) => return Ok(Parsed::Quit),
        ("resume", []) => OperatorAction::Resume,
        ("cordon", [name]) => OperatorAction::Cordon { node: node(name) },
        ("uncordon", [name]) => OperatorAction::Uncordon { node: node(name) },
        ("drain", [name]) => OperatorAction::Drain { node: node(name) },
        ("whatif" | "what-if", [name]) => OperatorAction::WhatIf { node: node(name) },
        ("restart", [target]) if !target.contains('/') || is_instance(target) => {
            OperatorAction::Restart { target: (*target).to_string() }
        }
        ("migrate", [instance, to]) if is_instance(instance) => {
            OperatorAction::Migrate { instance: (*instance).to_string(), to: node(to) }
        }
        _ => {
            let known =
                COMMANDS.iter().find(|(known, _, _)| *known == name || (name == "what-if" && *known == "whatif"));
            return Err(match known {
                Some((known, args, _)) => format!("usage: :{known} {args}").trim_end().to_string(),
                None => format!(
                    "unknown command \":{name}\" (try {})",
                    COMMANDS.iter().map(|(name, _, _)| format!(":{name}")).collect::<Vec<_>>().join(" ")
                ),
            });
        }
    };
    Ok(Parsed::Plan(action))
}

/// A parsed `:` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `:q`.
    Quit,
    /// An operator action, to plan and confirm.
    Plan(OperatorAction),
}

/// The usage of the command whose name starts like `line`'s first word,
/// as a hint while typing.
pub fn command_hint(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    let (name, args, what) = COMMANDS.iter().find(|(name, _, _)| name.starts_with(first))?;
    let usage = if args.is_empty() { format!(":{name}") } else { format!(":{name} {args}") };
    Some(format!("{usage}  {what}"))
}

/// `task/index` with a non-empty task and a number.
fn is_instance(text: &str) -> bool {
    text.rsplit_once('/')
        .is_some_and(|(task, index)| !task.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

fn dialog_key(app: &mut App, key: KeyEvent) -> Action {
    let Some(dialog) = app.dialog.as_mut() else {
        return Action::None;
    };
    let page = app.hits.dialog_lines.map_or(DEFAULT_PAGE, |(shown, _)| shown.max(1));
    let last = app.hits.dialog_lines.map_or(usize::MAX, |(shown, total)| total.saturating_sub(shown));
    let scroll = |dialog: &mut PlanDialog, delta: isize| {
        dialog.scroll = dialog.scroll.saturating_add_signed(delta).min(last);
    };
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => scroll(dialog, -1),
        KeyCode::Down | KeyCode::Char('j') => scroll(dialog, 1),
        KeyCode::PageUp => scroll(dialog, -isize::try_from(page).unwrap_or(1)),
        KeyCode::PageDown => scroll(dialog, isize::try_from(page).unwrap_or(1)),
        KeyCode::Enter | KeyCode::Char('y') => {
            let Some(dialog) = app.dialog.take() else {
                return Action::None;
            };
            if !dialog.read_only() {
                return Action::Command(Command::Act { action: dialog.action, confirmed: Some(dialog.plan) });
            }
        }
        KeyCode::Esc | KeyCode::Char('n') => {
            if let Some(dialog) = app.dialog.take()
                && !dialog.read_only()
            {
                app.set_message(format!("cancelled: {}", action_words(&dialog.action)), MessageKind::Info);
            }
        }
        _ => {}
    }
    Action::None
}

fn picker_key(app: &mut App, key: KeyEvent) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let page = app.hits.picker.map_or(DEFAULT_PAGE, |hit| usize::from(hit.rows.height).max(1));
    let Some(picker) = app.picker.as_mut() else {
        return Action::None;
    };
    let matching = picker.matching().count();
    let mut move_by = |delta: isize| {
        picker.cursor = picker.cursor.saturating_add_signed(delta).min(matching.saturating_sub(1));
    };
    let page = isize::try_from(page).unwrap_or(1);
    match key.code {
        KeyCode::Up => move_by(-1),
        KeyCode::Down => move_by(1),
        KeyCode::PageUp => move_by(-page),
        KeyCode::PageDown => move_by(page),
        KeyCode::Home => move_by(isize::MIN / 2),
        KeyCode::End => move_by(isize::MAX / 2),
        KeyCode::Esc => app.picker = None,
        KeyCode::Backspace => {
            picker.query.pop();
            picker.cursor = 0;
        }
        KeyCode::Char('u') if ctrl => {
            picker.query.clear();
            picker.cursor = 0;
        }
        KeyCode::Char(c) if !ctrl && !c.is_control() => {
            picker.query.push(c);
            picker.cursor = 0;
        }
        KeyCode::Enter => {
            let Some(value) = picker.current().map(|item| item.value.clone()) else {
                return Action::None;
            };
            let Some(picker) = app.picker.take() else {
                return Action::None;
            };
            return match picker.step {
                PickStep::Restart => Action::Plan(OperatorAction::Restart { target: value }),
                PickStep::MigrateInstance => {
                    open_targets(app, &value);
                    Action::None
                }
                PickStep::MigrateTarget { instance } => Action::Plan(OperatorAction::Migrate { instance, to: value }),
            };
        }
        _ => {}
    }
    Action::None
}

fn command_key(app: &mut App, key: KeyEvent) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let Some(line) = app.command_line.as_mut() else {
        return Action::None;
    };
    match key.code {
        KeyCode::Esc => app.command_line = None,
        KeyCode::Backspace if line.is_empty() => app.command_line = None,
        KeyCode::Backspace => {
            line.pop();
        }
        KeyCode::Char('u') if ctrl => line.clear(),
        KeyCode::Char(c) if !ctrl && !c.is_control() => line.push(c),
        KeyCode::Enter => {
            let line = app.command_line.take().unwrap_or_default();
            match parse_command(&line) {
                Ok(Parsed::Quit) => return Action::Quit,
                Ok(Parsed::Plan(action)) => return Action::Plan(action),
                Err(err) => app.set_message(err, MessageKind::Error),
            }
        }
        _ => {}
    }
    Action::None
}

fn help_key(app: &mut App, key: KeyEvent) {
    let page = app.hits.help_lines.map_or(DEFAULT_PAGE, |(shown, _)| shown.max(1));
    let page = isize::try_from(page).unwrap_or(1);
    match key.code {
        KeyCode::Esc | KeyCode::Char('?') | KeyCode::Enter => app.help = false,
        KeyCode::Up | KeyCode::Char('k') => scroll_help(app, -1),
        KeyCode::Down | KeyCode::Char('j') => scroll_help(app, 1),
        KeyCode::PageUp => scroll_help(app, -page),
        KeyCode::PageDown => scroll_help(app, page),
        KeyCode::Home | KeyCode::Char('g') => scroll_help(app, isize::MIN / 2),
        KeyCode::End | KeyCode::Char('G') => scroll_help(app, isize::MAX / 2),
        _ => {}
    }
}

fn scroll_help(app: &mut App, delta: isize) {
    let last = app.hits.help_lines.map_or(0, |(shown, total)| total.saturating_sub(shown));
    app.help_scroll = app.help_scroll.saturating_add_signed(delta).min(last);
}

/// `r`: in the tasks view the selected task (all its instances) or
/// instance; elsewhere one of the selected node's instances, picked from a
/// list when it has several.
fn restart(app: &mut App) -> Action {
    if app.view == View::Tasks {
        return match app.selected_task_item() {
            Some((_, Some(instance))) => Action::Plan(OperatorAction::Restart { target: instance.id.clone() }),
            Some((task, None)) => Action::Plan(OperatorAction::Restart { target: task.name.clone() }),
            None => {
                app.set_message("no task selected", MessageKind::Info);
                Action::None
            }
        };
    }
    let Some((name, _)) = acting_node(app) else {
        return Action::None;
    };
    let items = app.instances_on(&name);
    match items.as_slice() {
        [] => app.set_message(format!("node \"{name}\" runs no instances to restart"), MessageKind::Info),
        [only] => return Action::Plan(OperatorAction::Restart { target: only.value.clone() }),
        _ => app.picker = Some(Picker::new(PickStep::Restart, format!("restart which instance on \"{name}\""), items)),
    }
    Action::None
}

/// `m`: pick the instance (unless the tasks view has one selected, or
/// there is only one), then the node it moves to.
fn migrate(app: &mut App) -> Action {
    let (items, owner) = if app.view == View::Tasks {
        match app.selected_task_item() {
            Some((_, Some(instance))) => {
                let id = instance.id.clone();
                open_targets(app, &id);
                return Action::None;
            }
            Some((task, None)) => {
                let items = task
                    .instances
                    .iter()
                    .map(|instance| PickItem {
                        value: instance.id.clone(),
                        facts: PickFacts::Instance { state: instance.state.clone(), node: instance.node.clone() },
                    })
                    .collect::<Vec<_>>();
                (items, format!("task \"{}\"", task.name))
            }
            None => {
                app.set_message("no task selected", MessageKind::Info);
                return Action::None;
            }
        }
    } else {
        let Some((name, _)) = acting_node(app) else {
            return Action::None;
        };
        (app.instances_on(&name), format!("node \"{name}\""))
    };
    match items.as_slice() {
        [] => app.set_message(format!("{owner} has no instances to migrate"), MessageKind::Info),
        [only] => {
            let id = only.value.clone();
            open_targets(app, &id);
        }
        _ => {
            app.picker =
                Some(Picker::new(PickStep::MigrateInstance, format!("migrate which instance of {owner}"), items))
        }
    }
    Action::None
}

/// Opens the list of nodes `instance` may move to, or says there is none.
fn open_targets(app: &mut App, instance: &str) {
    let targets = app.migration_targets(instance);
    if targets.is_empty() {
        app.set_message(
            format!("no node can take {instance}: none is alive, uncordoned and free of its task"),
            MessageKind::Info,
        );
        return;
    }
    let step = PickStep::MigrateTarget { instance: instance.to_string() };
    app.picker = Some(Picker::new(step, format!("migrate {instance} to"), targets));
}

/// `d`, `c`, `w`: an action on the acting node, given its name and whether
/// it is cordoned.
fn node_action(app: &mut App, action: impl FnOnce(String, bool) -> OperatorAction) -> Action {
    match acting_node(app) {
        Some((name, cordoned)) => Action::Plan(action(name, cordoned)),
        None => Action::None,
    }
}

/// The node the node actions act on, and whether it is cordoned: the
/// selected node in the node views and the detail, the selected instance's
/// node in the tasks view. Says why there is none in the status line.
fn acting_node(app: &mut App) -> Option<(String, bool)> {
    let name = match app.view {
        View::Overview | View::Nodes | View::Detail => app.selected.clone().ok_or("select a node first".to_string()),
        View::Tasks => match app.selected_task_item() {
            Some((_, Some(instance))) => {
                instance.node.clone().ok_or_else(|| format!("{} is not placed on a node", instance.id))
            }
            Some((_, None)) => Err("select an instance: node actions act on its node".to_string()),
            None => Err("no task selected".to_string()),
        },
        View::Events => Err("select a node in view 1, 2 or 4 first".to_string()),
    };
    let found = name.and_then(|name| {
        app.nodes
            .iter()
            .find(|node| node.name == name)
            .map(|node| (name.clone(), node.cordoned))
            .ok_or_else(|| format!("node \"{name}\" is no longer known"))
    });
    match found {
        Ok(found) => Some(found),
        Err(refusal) => {
            app.set_message(refusal, MessageKind::Info);
            None
        }
    }
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
        app.refresh_task_items();
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
        View::Tasks => app.move_task_selection(delta),
        View::Overview | View::Nodes | View::Detail => app.move_selection(delta),
    }
}

fn page(app: &App) -> isize {
    let rows = match app.view {
        View::Events => app.hits.events.map(|(_, shown)| shown),
        View::Tasks => app.hits.tasks.map(|table| usize::from(table.rows.height)),
        _ => app.hits.table.map(|table| usize::from(table.rows.height)),
    };
    isize::try_from(rows.unwrap_or(DEFAULT_PAGE).max(1)).unwrap_or(1)
}

fn open_detail(app: &mut App) {
    match app.view {
        View::Overview | View::Nodes if app.selected.is_some() => {
            app.back = app.view;
            app.view = View::Detail;
        }
        View::Tasks => {
            // An instance's node in depth.
            let Some(node) = app.selected_task_item().and_then(|(_, instance)| instance?.node.clone()) else {
                return;
            };
            if app.select_name(&node) {
                app.back = View::Tasks;
                app.view = View::Detail;
            } else {
                app.set_message(format!("node \"{node}\" is hidden by the filter (Esc clears it)"), MessageKind::Info);
            }
        }
        _ => {}
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
    if let Some(table) = app.hits.tasks
        && table.rows.contains(position)
    {
        let index = table.offset + usize::from(row - table.rows.y);
        if index < app.task_items.len() {
            app.select_task_position(index);
        }
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
