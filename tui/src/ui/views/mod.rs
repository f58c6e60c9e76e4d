//! Drawing. Every function here only reads the [`App`]; the one thing it
//! hands back is where it drew clickable things ([`Hits`]), for the mouse.
//!
//! # Layout
//! - [`overview`]: cluster ring, node table and event log together.
//! - [`ring`]: the ring canvas.
//! - [`nodes`]: the node table (in the overview, and full screen).
//! - [`detail`]: one node's charts, cores, disks and facts.
//! - [`events`]: the event log (in the overview, and full screen).
//! - [`tasks`]: tasks and instances.
//! - [`dialog`]: an action's plan, to confirm (or read, for what-if).
//! - [`picker`]: a list to pick an instance or a node from.
//! - [`help`]: the key overlay.
//! - [`too_small`]: the polite refusal below 80×24.

pub mod detail;
pub mod dialog;
pub mod events;
pub mod help;
pub mod nodes;
pub mod overview;
pub mod picker;
pub mod ring;
pub mod tasks;
pub mod too_small;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ringwatch_shared::placement::Headroom;
use ringwatch_shared::plan::describe;
use ringwatch_shared::status::{ConsoleRole, DataStatus};

use crate::ui::format;
use crate::ui::keys::command_hint;
use crate::ui::state::{App, Hits, MIN_SIZE, MessageKind, STATES, View};
use crate::ui::theme;

/// Draws the whole screen for `app` and says where the clickable parts went.
pub fn draw(frame: &mut Frame<'_>, app: &App) -> Hits {
    let area = frame.area();
    let mut hits = Hits::default();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        too_small::draw(frame, area);
        return hits;
    }
    let alarm = banner_text(app);
    let banner_rows = u16::from(alarm.is_some());
    let [header, cluster, banner, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(banner_rows),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, &mut hits);
    draw_cluster_bar(frame, cluster, app);
    if let Some(text) = &alarm {
        draw_banner(frame, banner, text);
    }
    match app.view {
        View::Overview => overview::draw(frame, body, app, &mut hits),
        View::Nodes => nodes::draw(frame, body, app, &mut hits, true),
        View::Events => events::draw(frame, body, app, &mut hits, true),
        View::Tasks => tasks::draw(frame, body, app, &mut hits),
        View::Detail => detail::draw(frame, body, app),
    }
    draw_footer(frame, footer, app);
    if app.help {
        help::draw(frame, body, app, &mut hits);
    }
    if let Some(picker) = &app.picker {
        let previous = app.hits.picker.map_or(0, |hit| hit.offset);
        picker::draw(frame, body, picker, previous, &mut hits);
    }
    if let Some(dialog) = &app.dialog {
        dialog::draw(frame, body, dialog, &mut hits);
    }
    hits
}

/// The loud line while automatic failover is paused: on every view, since
/// nothing fails over until the operator resumes.
fn draw_banner(frame: &mut Frame<'_>, area: Rect, reason: &str) {
    let lead = " automatic failover PAUSED — :resume to resume ";
    let room = usize::from(area.width).saturating_sub(lead.chars().count() + 3);
    let mut spans = vec![Span::raw(lead)];
    if room >= 10 {
        spans.push(Span::raw("│ "));
        spans.push(Span::styled(format::truncate(reason, room), theme::banner().remove_modifier(Modifier::BOLD)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme::banner()), area);
}

/// A bordered block with a title, in the house style.
pub(crate) fn block(title: Line<'_>) -> Block<'_> {
    Block::default().borders(Borders::ALL).border_style(theme::border()).title(title)
}

/// A title line: ` name ` in the title style, then extra dim parts.
pub(crate) fn title<'a>(name: &'a str, extra: Vec<Span<'a>>) -> Line<'a> {
    let mut spans = vec![Span::styled(format!(" {name} "), theme::title())];
    spans.extend(extra);
    Line::from(spans)
}

/// `area` shrunk to at most `width` × `height`, centred.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(area.x + (area.width - width) / 2, area.y + (area.height - height) / 2, width, height)
}

/// What the red banner says: a store that cannot be written (no decision
/// takes effect), then a failover pause.
fn banner_text(app: &App) -> Option<String> {
    if let Some(problem) = &app.link_problem {
        return Some(format!("NOT LIVE: {problem}"));
    }
    match (&app.console.store_problem, &app.failover_paused) {
        (Some(problem), _) => Some(format!("the state store cannot be written; no decision takes effect: {problem}")),
        (None, Some(reason)) => Some(reason.clone()),
        (None, None) => None,
    }
}

/// Which console answers, when it is one of a group: ` standby · leader
/// ADDR ` or ` leader · term N `; nothing for a single console.
fn console_badge(app: &App) -> Option<Span<'static>> {
    let console = &app.console;
    match console.role {
        ConsoleRole::Standby => {
            let leader = console.leader.as_deref().unwrap_or("none yet");
            Some(Span::styled(format!(" standby · leader {leader} "), Style::new().fg(Color::Black).bg(Color::Yellow)))
        }
        ConsoleRole::Leader if console.term > 0 => {
            Some(Span::styled(format!(" leader · term {} ", console.term), theme::dim()))
        }
        ConsoleRole::Leader => None,
    }
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits) {
    let mut spans = vec![Span::styled(format!(" {} ", app.title), theme::title().add_modifier(Modifier::REVERSED))];
    spans.push(Span::raw(" "));
    let mut x = area.x.saturating_add(span_width(&spans));
    let current = if app.view == View::Detail { app.back } else { app.view };
    for (index, view) in View::TABS.into_iter().enumerate() {
        let label = format!(" {} {} ", index + 1, view.title());
        let width = u16::try_from(label.chars().count()).unwrap_or(u16::MAX);
        hits.tabs.push((Rect::new(x, area.y, width.min(area.right().saturating_sub(x)), 1), view));
        x = x.saturating_add(width);
        spans.push(Span::styled(label, if view == current { theme::tab_active() } else { theme::tab() }));
    }
    if app.view == View::Detail {
        let name = app.selected.as_deref().unwrap_or("-");
        spans.push(Span::styled(format!(" › {} ", format::truncate(name, 24)), theme::title()));
    }
    let used = span_width_usize(&spans) + 1;
    frame.render_widget(Paragraph::new(Line::from(spans)), area);

    // The right side as far as it fits: the demo badge, then the address.
    let demo = app.demo.then(|| Span::styled(" demo ", Style::new().fg(Color::Black).bg(Color::Yellow)));
    let demo = demo.or_else(|| {
        app.read_only.then(|| Span::styled(" viewer · read-only ", Style::new().fg(Color::Black).bg(Color::Cyan)))
    });
    let listen = app.listen.map(|listen| Span::styled(format!(" {listen} "), theme::dim()));
    let badge = console_badge(app);
    for candidate in [vec![demo.clone(), badge.clone(), listen], vec![demo.clone(), badge], vec![demo]] {
        let right: Vec<Span<'_>> = candidate.into_iter().flatten().collect();
        let width = span_width_usize(&right);
        if width > 0 && used + width <= usize::from(area.width) {
            frame.render_widget(Paragraph::new(Line::from(right).right_aligned()), area);
            break;
        }
    }
}

fn draw_cluster_bar(frame: &mut Frame<'_>, area: Rect, app: &App) {
    // The roomy form, then compact ones that keep headroom on 80 columns.
    for form in [Form::Roomy, Form::Compact, Form::Tight] {
        let line = cluster_line(app, form);
        if line.width() <= usize::from(area.width) || form == Form::Tight {
            frame.render_widget(Paragraph::new(line), area);
            return;
        }
    }
}

/// How much room the cluster bar takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Words and wide separators.
    Roomy,
    /// Narrow separators, headroom still in words.
    Compact,
    /// Headroom as a number, no data store figures.
    Tight,
}

fn cluster_line(app: &App, form: Form) -> Line<'static> {
    let compact = form != Form::Roomy;
    let (dot, bar) = if compact { (" ", " │ ") } else { (" · ", "  │  ") };
    let total: usize = app.counts.iter().sum();
    let mut spans = vec![Span::styled(
        format!(" {} node{}", format::count(total), if total == 1 { "" } else { "s" }),
        theme::title(),
    )];
    spans.push(Span::styled(if compact { " │" } else { "" }, theme::dim()));
    for (index, (state, count)) in STATES.iter().zip(app.counts).enumerate() {
        if count > 0 || index == 0 {
            spans.push(Span::styled(dot, theme::dim()));
            spans.push(Span::styled(format!("{} {state}", format::count(count)), theme::state_style(*state)));
        }
    }
    if app.cordoned > 0 {
        spans.push(Span::styled(dot, theme::dim()));
        let cordoned = format::count(app.cordoned);
        spans.push(Span::styled(
            if compact { format!("{cordoned}⊘") } else { format!("{cordoned} cordoned ⊘") },
            theme::info(),
        ));
    }
    spans.push(Span::styled(bar, theme::dim()));
    spans.push(Span::raw(format!("{} {}", if compact { "inst" } else { "instances" }, format::count(app.instances))));
    spans.push(Span::styled(bar, theme::dim()));
    // The tightest form leaves the data store out: headroom matters more.
    if app.data.objects > 0 && form != Form::Tight {
        spans.extend(data_spans(&app.data, compact, dot));
        spans.push(Span::styled(bar, theme::dim()));
    }
    let Headroom { failures_survived, capacity_ok } = app.headroom;
    let style = theme::headroom(failures_survived, capacity_ok);
    spans.push(Span::raw(if compact { "headroom " } else { "headroom: " }));
    spans.push(Span::styled(
        if form == Form::Tight { short_headroom(app.headroom) } else { describe(app.headroom) },
        style,
    ));
    if app.dropped_events > 0 {
        spans.push(Span::styled(bar, theme::dim()));
        let dropped = format::count(count_u64(app.dropped_events));
        spans.push(Span::styled(format!("{dropped} events not persisted"), theme::error()));
    }
    Line::from(spans)
}

/// The data store in the cluster bar (README.md, "Data"): objects and
/// bytes, then what is wrong with them and the repair under way.
fn data_spans(data: &DataStatus, compact: bool, dot: &'static str) -> Vec<Span<'static>> {
    let objects = usize::try_from(data.objects).unwrap_or(usize::MAX);
    let mut spans = vec![Span::raw(if compact {
        format!("data {}", format::count(objects))
    } else {
        format!("data {} objects, {}", format::count(objects), format::bytes(data.bytes))
    })];
    if data.under_replicated > 0 {
        spans.push(Span::styled(dot, theme::dim()));
        let under = format::count(usize::try_from(data.under_replicated).unwrap_or(usize::MAX));
        spans.push(Span::styled(
            if compact { format!("{under} under") } else { format!("{under} under-replicated") },
            theme::info(),
        ));
    }
    if data.unavailable > 0 {
        spans.push(Span::styled(dot, theme::dim()));
        let lost = format::count(usize::try_from(data.unavailable).unwrap_or(usize::MAX));
        spans.push(Span::styled(format!("{lost} unavailable"), theme::error()));
    }
    if data.repair_bytes_per_sec > 0 && !compact {
        spans.push(Span::styled(dot, theme::dim()));
        #[allow(clippy::cast_precision_loss)]
        spans.push(Span::raw(format!("repair {}", format::rate(data.repair_bytes_per_sec as f64))));
    }
    spans
}

/// Headroom in a few characters: `1`, `0, short`, `none` (a task is down),
/// `—` (no tasks).
fn short_headroom(headroom: Headroom) -> String {
    let survives = match headroom.failures_survived {
        None => return "—".to_string(),
        Some(survived) if survived < 0 => "none".to_string(),
        Some(survived) => survived.to_string(),
    };
    if headroom.capacity_ok { survives } else { format!("{survives}, short") }
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, app: &App) {
    if let Some(line) = &app.command_line {
        let hint = command_hint(line).unwrap_or_else(|| "Enter runs · Esc cancels · ? lists commands".to_string());
        let line = Line::from(vec![
            Span::styled(" :", theme::key()),
            Span::raw(line.as_str()),
            Span::styled("█", theme::key()),
            Span::styled(format!("   {hint}"), theme::dim()),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if app.filter_editing {
        let line = Line::from(vec![
            Span::styled(" /", theme::key()),
            Span::raw(app.filter.as_str()),
            Span::styled("█", theme::key()),
            Span::styled("   Enter keep · Esc clear", theme::dim()),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let mut spans = Vec::new();
    if let Some(message) = &app.message {
        let style = match message.kind {
            MessageKind::Info => theme::info(),
            MessageKind::Ok => theme::ok(),
            MessageKind::Error => theme::error(),
        };
        spans.push(Span::styled(format!(" {} ", message.text), style));
        spans.push(Span::styled("│", theme::dim()));
    }
    // (key, what, priority): lower numbers stay longest when narrow.
    let hints: &[(&str, &str, u8)] = match app.view {
        _ if app.dialog.as_ref().is_some_and(|dialog| dialog.read_only()) => {
            &[("Esc", "close", 0), ("↑↓", "scroll", 1)]
        }
        _ if app.dialog.is_some() => &[("Enter y", "confirm", 0), ("Esc n", "cancel", 0), ("↑↓", "scroll", 1)],
        _ if app.picker.is_some() => {
            &[("type", "to narrow", 1), ("↑↓", "move", 1), ("Enter", "pick", 0), ("Esc", "cancel", 0)]
        }
        View::Overview | View::Nodes => &[
            ("↑↓", "select", 2),
            ("Enter", "detail", 1),
            ("r m d c w", "act", 3),
            (":", "command", 3),
            ("/", "filter", 2),
            ("s", "sort", 3),
            ("a", "arcs", 4),
            ("Tab", "view", 4),
            ("?", "help", 0),
            ("q", "quit", 0),
        ],
        View::Detail => {
            &[("Esc", "back", 1), ("↑↓", "next node", 2), ("r m d c w", "act", 3), ("?", "help", 0), ("q", "quit", 0)]
        }
        View::Events => &[
            ("↑↓", "scroll", 2),
            ("End", "follow", 3),
            ("/", "filter", 2),
            ("Tab", "view", 4),
            ("?", "help", 0),
            ("q", "quit", 0),
        ],
        View::Tasks => &[
            ("↑↓", "select", 2),
            ("r", "restart", 1),
            ("m", "migrate", 1),
            ("d c w", "its node", 3),
            ("Enter", "node", 3),
            (":", "command", 2),
            ("Tab", "view", 4),
            ("?", "help", 0),
            ("q", "quit", 0),
        ],
    };
    let modal = app.dialog.is_some() || app.picker.is_some();
    let demo: &[(&str, &str, u8)] = if app.demo && !modal {
        &[("x", "crash", 1), ("p", "partition", 1), ("t", "stall", 1), ("h", "heal", 1)]
    } else {
        &[]
    };
    let filter_room = if app.filter.is_empty() || app.message.is_some() { 0 } else { filter_width(app) };
    let demo_label = if demo.is_empty() { 0 } else { "  demo".len() };
    let room = usize::from(area.width).saturating_sub(span_width_usize(&spans) + filter_room + demo_label);
    let width_of = |(key, what, _): &(&str, &str, u8)| key.chars().count() + what.chars().count() + 2;
    let all: Vec<&(&str, &str, u8)> = hints.iter().chain(demo).collect();
    let mut max_priority = 4;
    while max_priority > 0
        && all.iter().filter(|hint| hint.2 <= max_priority).map(|hint| width_of(hint)).sum::<usize>() > room
    {
        max_priority -= 1;
    }
    for (index, hint) in all.iter().enumerate() {
        if hint.2 > max_priority {
            continue;
        }
        if index == hints.len() {
            spans.push(Span::styled("  demo", theme::info()));
        }
        let (key, what, _) = hint;
        spans.push(Span::styled(format!(" {key}"), theme::key()));
        spans.push(Span::styled(format!(" {what}"), theme::dim()));
    }
    if !app.filter.is_empty() && app.message.is_none() {
        let filter = Line::from(vec![
            Span::styled(" filter ", theme::dim()),
            Span::styled(format!("{} ", app.filter), theme::key()),
        ]);
        frame.render_widget(Paragraph::new(filter.right_aligned()), area);
        let used = u16::try_from(filter_width(app)).unwrap_or(u16::MAX);
        let left = Rect { width: area.width.saturating_sub(used), ..area };
        frame.render_widget(Paragraph::new(Line::from(spans)), left);
        return;
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn filter_width(app: &App) -> usize {
    " filter ".len() + app.filter.chars().count() + 1
}

fn span_width_usize(spans: &[Span<'_>]) -> usize {
    spans.iter().map(Span::width).sum()
}

fn span_width(spans: &[Span<'_>]) -> u16 {
    u16::try_from(spans.iter().map(Span::width).sum::<usize>()).unwrap_or(u16::MAX)
}

fn count_u64(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
