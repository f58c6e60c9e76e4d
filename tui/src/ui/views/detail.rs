//! One node in depth: its facts, charts of CPU, memory and network over the
//! kept history, per-core CPU bars and disks.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table};
use ringwatch_shared::status::NodeState;

use crate::ui::format;
use crate::ui::state::{App, HISTORY_INTERVAL_MS, HISTORY_LEN, History, HistoryPoint, HostDetail, NodeRow};
use crate::ui::theme;
use crate::ui::views::{block, centered, title};

/// Cells per core entry: label, bar, percentage.
const CORE_LABEL: usize = 4;
/// Cells of a core's bar.
const CORE_BAR: usize = 10;
/// Width of one core entry with its gap.
const CORE_ENTRY: u16 = 21;

/// Draws the detail of the selected node in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let Some(node) = app.selected_node() else {
        let name = app.selected.as_deref().unwrap_or("-");
        let text = Line::styled(format!("node \"{name}\" is no longer known (Esc goes back)"), theme::dim()).centered();
        frame.render_widget(Paragraph::new(text), centered(area, area.width, 1));
        return;
    };
    let host = node.host.as_ref();
    let bottom_rows = bottom_height(host, area);
    let lines = fact_lines(node, host, usize::from(area.width.saturating_sub(2)));
    let facts_rows = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX).min(area.height / 4).max(3);
    let [facts, charts, bottom] =
        Layout::vertical([Constraint::Length(facts_rows), Constraint::Fill(1), Constraint::Length(bottom_rows)])
            .areas(area);
    draw_facts(frame, facts, node, lines);
    draw_charts(frame, charts, app.history(&node.name));
    if bottom.height > 0 {
        let with_instances = host.is_some_and(|host| !host.instances.is_empty());
        if with_instances {
            let [cores, disks, instances] = Layout::horizontal([
                Constraint::Percentage(40),
                Constraint::Percentage(30),
                Constraint::Percentage(30),
            ])
            .areas(bottom);
            draw_cores(frame, cores, host);
            draw_disks(frame, disks, host);
            draw_instances(frame, instances, host);
        } else {
            let [cores, disks] =
                Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(bottom);
            draw_cores(frame, cores, host);
            draw_disks(frame, disks, host);
        }
    }
}

fn bottom_height(host: Option<&HostDetail>, area: Rect) -> u16 {
    let Some(host) = host else {
        return 3;
    };
    let core_share = if host.instances.is_empty() { 55 } else { 40 };
    let core_width = (area.width * core_share / 100).saturating_sub(2);
    let per_row = usize::from((core_width / CORE_ENTRY).max(1));
    let core_rows = host.cores.len().div_ceil(per_row);
    let disk_rows = host.disks.len() + 1;
    let instance_rows = host.instances.len() + 1;
    let wanted = u16::try_from(core_rows.max(disk_rows).max(instance_rows).max(1) + 2).unwrap_or(u16::MAX);
    wanted.min(area.height / 3).max(3)
}

/// The node's facts as `label value` items flowed into lines of `width`
/// cells, never splitting an item.
fn fact_lines(node: &NodeRow, host: Option<&HostDetail>, width: usize) -> Vec<Line<'static>> {
    let address = if node.address.is_empty() { "disconnected".to_string() } else { node.address.clone() };
    let mut facts: Vec<(&'static str, String, Style)> = vec![
        ("address", address, Style::new()),
        ("up", host.map_or_else(|| "-".to_string(), |host| format::uptime(host.uptime_secs)), Style::new()),
        ("phi", format::phi(node.phi), Style::new()),
        ("seen", format!("{} ago", format::ago(node.last_seen_ms)), Style::new()),
        ("lost", node.heartbeats_lost.to_string(), Style::new()),
    ];
    // Measured only while it is connected (`NodeStatus::rtt_ms`).
    if let Some(rtt) = node.rtt_ms {
        facts.push(("rtt", format::rtt(rtt), Style::new()));
    }
    facts.extend([
        ("weight", node.weight.to_string(), Style::new()),
        ("share", format::percent(node.share * 100.0), Style::new()),
        ("load", format!("{:.2} {:.2} {:.2}", node.load[0], node.load[1], node.load[2]), Style::new()),
        (
            "mem",
            format!("{} ({})", format::used_of(node.mem_used, node.mem_total), format::percent(node.mem_percent())),
            Style::new(),
        ),
    ]);
    if node.data.0 > 0 {
        let copies = format::count(usize::try_from(node.data.0).unwrap_or(usize::MAX));
        facts.push(("data", format!("{copies} objects, {}", format::bytes(node.data.1)), Style::new()));
    }
    // A full quota is why a node takes no new copies: said where its
    // figures are.
    if node.data_free == Some(0) {
        facts.push((
            "quota",
            "full: takes no new copies".into(),
            Style::new().fg(theme::state_color(NodeState::Degraded)),
        ));
    }
    if let Some(host) = host.filter(|host| host.swap_total > 0) {
        facts.push(("swap", format::used_of(host.swap_used, host.swap_total), Style::new()));
    }
    facts.push(("instances", node.instances.len().to_string(), Style::new()));
    let reason = if node.reason.is_empty() { "-".to_string() } else { node.reason.clone() };
    facts.push(("reason", reason, Style::new().fg(theme::state_color(node.state))));

    let mut lines = Vec::new();
    let mut line: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (label, value, style) in facts {
        let item = label.chars().count() + 1 + value.chars().count();
        let gap = if line.is_empty() { 0 } else { 3 };
        if !line.is_empty() && used + gap + item > width {
            lines.push(Line::from(std::mem::take(&mut line)));
            used = 0;
        }
        if !line.is_empty() {
            line.push(Span::styled(" · ", theme::dim()));
            used += 3;
        }
        let room = width.saturating_sub(used + label.chars().count() + 1);
        line.push(Span::styled(format!("{label} "), theme::dim()));
        line.push(Span::styled(format::truncate(&value, room), style));
        used += item;
    }
    if !line.is_empty() {
        lines.push(Line::from(line));
    }
    lines
}

fn draw_facts(frame: &mut Frame<'_>, area: Rect, node: &NodeRow, lines: Vec<Line<'static>>) {
    let mut heading = vec![Span::styled(node.state.as_str(), theme::state_style(node.state))];
    if node.cordoned {
        heading.push(Span::styled(" · cordoned", theme::info()));
    }
    heading.push(Span::raw(" "));
    let outer = block(title(&node.name, heading));
    frame.render_widget(Paragraph::new(lines).block(outer), area);
}

fn draw_charts(frame: &mut Frame<'_>, area: Rect, history: Option<&History>) {
    let empty = History::default();
    let history = history.unwrap_or(&empty);
    let series = |value: fn(&HistoryPoint) -> f32| -> Vec<(f64, f64)> {
        let len = history.len();
        history
            .points()
            .enumerate()
            .map(|(index, point)| (seconds_ago(len - 1 - index), f64::from(value(point))))
            .collect()
    };
    let cpu = series(|point| point.cpu);
    let mem = series(|point| point.mem);
    let rx = series(|point| point.rx);
    let tx = series(|point| point.tx);
    let net_max = rx.iter().chain(&tx).map(|&(_, value)| value).fold(0.0_f64, f64::max).max(1024.0) * 1.1;
    let percent_labels = || vec![Line::from("0"), Line::from("50"), Line::from("100%")];
    let net_labels = vec![Line::from("0"), Line::from(format::rate(net_max / 2.0)), Line::from(format::rate(net_max))];
    let line = |color, data| {
        Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(Style::new().fg(color)).data(data)
    };
    // Series names in their colours in the title serve as the legend.
    let name = |text: &'static str, color| Span::styled(text, theme::title().fg(color));
    let samples = history.len();
    let net_title = vec![
        name(" network ", theme::NET_RX),
        Span::styled("↓rx ", Style::new().fg(theme::NET_RX)),
        Span::styled("↑tx ", Style::new().fg(theme::NET_TX)),
    ];
    let net_chart =
        chart(net_title, vec![line(theme::NET_RX, &rx), line(theme::NET_TX, &tx)], net_max, net_labels, samples);
    if area.width >= 120 {
        let [left, middle, right] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(area);
        let cpu_chart =
            chart(vec![name(" cpu ", theme::CPU)], vec![line(theme::CPU, &cpu)], 100.0, percent_labels(), samples);
        let mem_title = vec![name(" memory ", theme::MEMORY)];
        let mem_chart = chart(mem_title, vec![line(theme::MEMORY, &mem)], 100.0, percent_labels(), samples);
        frame.render_widget(cpu_chart, left);
        frame.render_widget(mem_chart, middle);
        frame.render_widget(net_chart, right);
    } else {
        let title = vec![name(" cpu", theme::CPU), Span::styled(" · ", theme::dim()), name("memory ", theme::MEMORY)];
        let both =
            chart(title, vec![line(theme::CPU, &cpu), line(theme::MEMORY, &mem)], 100.0, percent_labels(), samples);
        let [left, right] = Layout::horizontal([Constraint::Percentage(50); 2]).areas(area);
        frame.render_widget(both, left);
        frame.render_widget(net_chart, right);
    }
}

/// The x position of a sample `steps` intervals before the newest, in
/// seconds (negative: the past is to the left).
fn seconds_ago(steps: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)] // at most HISTORY_LEN
    let seconds = (steps as u64 * HISTORY_INTERVAL_MS) as f64 / 1_000.0;
    -seconds
}

fn chart<'a>(
    mut name: Vec<Span<'a>>,
    datasets: Vec<Dataset<'a>>,
    y_max: f64,
    y_labels: Vec<Line<'a>>,
    samples: usize,
) -> Chart<'a> {
    let span = seconds_ago(HISTORY_LEN - 1);
    let seconds = u64::try_from(samples).unwrap_or(u64::MAX).saturating_mul(HISTORY_INTERVAL_MS) / 1_000;
    name.push(Span::styled(format!("{} of history ", format::uptime(seconds)), theme::dim()));
    let x_labels = vec![
        Line::from(format!("{:.0}m", span / 60.0)),
        Line::from(format!("{:.0}m", span / 120.0)),
        Line::from("now"),
    ];
    Chart::new(datasets)
        .block(block(Line::from(name)))
        .x_axis(Axis::default().bounds([span, 0.0]).labels(x_labels).style(theme::dim()))
        .y_axis(Axis::default().bounds([0.0, y_max]).labels(y_labels).style(theme::dim()))
        .legend_position(None)
}

fn draw_cores(frame: &mut Frame<'_>, area: Rect, host: Option<&HostDetail>) {
    let cores = host.map_or(0, |host| host.cores.len());
    let outer = block(title("cores", vec![Span::styled(format!("{cores} "), theme::dim())]));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let Some(host) = host else {
        frame.render_widget(Paragraph::new(Line::styled("no full metrics sample yet", theme::dim())), inner);
        return;
    };
    let per_row = usize::from((inner.width / CORE_ENTRY).max(1));
    let rows = usize::from(inner.height);
    let mut lines: Vec<Line<'_>> = Vec::new();
    for row in 0..rows {
        let mut spans = Vec::new();
        for column in 0..per_row {
            // Column-major, so core numbers read down first like `htop`.
            let index = column * rows + row;
            let Some(&percent) = host.cores.get(index) else {
                continue;
            };
            spans.push(Span::styled(format!("{:<CORE_LABEL$}", format!("c{index}")), theme::dim()));
            spans.push(Span::styled(bar(percent, CORE_BAR), Style::new().fg(theme::usage_color(percent))));
            spans.push(Span::raw(format!("{percent:>5.0}% ")));
        }
        lines.push(Line::from(spans));
    }
    let hidden = host.cores.len().saturating_sub(rows * per_row);
    if hidden > 0
        && let Some(last) = lines.last_mut()
    {
        *last = Line::styled(format!("… {hidden} more cores"), theme::dim());
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_disks(frame: &mut Frame<'_>, area: Rect, host: Option<&HostDetail>) {
    let outer = block(title("disks", Vec::new()));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let Some(host) = host.filter(|host| !host.disks.is_empty()) else {
        frame.render_widget(Paragraph::new(Line::styled("no disks reported", theme::dim())), inner);
        return;
    };
    let mount_width = usize::from(inner.width.saturating_sub(11 + 4 + 8 + 3));
    let rows = host.disks.iter().map(|disk| {
        let percent = disk.percent();
        Row::new(vec![
            Cell::from(format::truncate(&disk.mount, mount_width)),
            Cell::from(Line::from(format::used_of(disk.used, disk.total)).right_aligned()),
            Cell::from(Line::from(format!("{percent:.0}%").fg(theme::usage_color(percent))).right_aligned()),
            Cell::from(Span::styled(bar(percent, 8), Style::new().fg(theme::usage_color(percent)))),
        ])
    });
    let header = Row::new(vec![
        Cell::from("MOUNT"),
        Cell::from(Line::from("USED/SIZE").right_aligned()),
        Cell::from(Line::from("USE").right_aligned()),
        Cell::from(""),
    ])
    .style(theme::header());
    let widths = [Constraint::Fill(1), Constraint::Length(11), Constraint::Length(4), Constraint::Length(8)];
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}

fn draw_instances(frame: &mut Frame<'_>, area: Rect, host: Option<&HostDetail>) {
    let Some(host) = host else {
        return;
    };
    let outer = block(title("instances", vec![Span::styled(format!("{} ", host.instances.len()), theme::dim())]));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let id_width = usize::from(inner.width.saturating_sub(7 + 5 + 2));
    let rows = host.instances.iter().map(|instance| {
        Row::new(vec![
            Cell::from(format::truncate(&instance.id, id_width)),
            Cell::from(Line::from(format::percent(instance.cpu_percent)).right_aligned()),
            Cell::from(Line::from(format::bytes(instance.rss)).right_aligned()),
        ])
    });
    let header = Row::new(vec![
        Cell::from("INSTANCE"),
        Cell::from(Line::from("CPU").right_aligned()),
        Cell::from(Line::from("RSS").right_aligned()),
    ])
    .style(theme::header());
    let widths = [Constraint::Fill(1), Constraint::Length(7), Constraint::Length(5)];
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}

/// A bar `width` cells long filled to `percent`, in eighths of a cell.
pub fn bar(percent: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = ['·', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
    let filled = (percent.clamp(0.0, 100.0) / 100.0 * (width * 8) as f64).round() as usize;
    let mut out = "█".repeat(filled / 8);
    if filled / 8 < width {
        out.push(if filled.is_multiple_of(8) { '·' } else { EIGHTHS[filled % 8] });
        out.push_str(&"·".repeat(width - filled / 8 - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_eighths_and_keep_their_width() {
        assert_eq!(bar(0.0, 4), "····");
        assert_eq!(bar(100.0, 4), "████");
        assert_eq!(bar(50.0, 4), "██··");
        assert_eq!(bar(56.25, 4), "██▎·");
        assert_eq!(bar(250.0, 3), "███");
        for percent in [0.0, 3.0, 49.9, 99.0, 100.0] {
            assert_eq!(bar(percent, 10).chars().count(), 10);
        }
    }
}
