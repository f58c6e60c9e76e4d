//! The ring on a braille [`Canvas`]: each node's arcs in its state's
//! colour (or, switched with `a`, in the colour of its share of the data
//! store against an even share, with a legend underneath), instances as
//! dots just inside where their keys hash, the selected node's arcs traced
//! again just outside the ring and its instances as longer ticks in the
//! same highlight, and the selected node's name and share in the middle.
//!
//! The drawing samples the cached owner of each angle slice (see
//! [`crate::ui::ring`]), so its cost depends on the canvas size, not on the
//! number of nodes or virtual points.

use std::f64::consts::TAU;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::widgets::canvas::{Canvas, Painter, Shape};
use ringwatch_shared::status::NodeState;

use crate::ui::format;
use crate::ui::ring::{BUCKETS, Bounds, bucket_of, point_at};
use crate::ui::state::{App, Hits, NodeRow, RingColors, RingHit};
use crate::ui::theme;
use crate::ui::views::{block, title};

/// Braille dots are half a unit apart on both axes.
const DOT: f64 = 0.5;

/// The ring band: its colour per slice.
struct Band<'a> {
    /// The owner of each slice of the circle.
    buckets: &'a [u32],
    /// Each owner's colour.
    colors: &'a [Color],
    /// Inner and outer radius.
    radii: (f64, f64),
}

impl Shape for Band<'_> {
    fn draw(&self, painter: &mut Painter<'_, '_>) {
        if self.buckets.len() != BUCKETS {
            return;
        }
        let mut radius = self.radii.0;
        while radius <= self.radii.1 + 1e-9 {
            let steps = steps_for(radius);
            for step in 0..steps {
                let angle = step_angle(step, steps);
                let owner = self.buckets[bucket_of(angle)] as usize;
                let color = self.colors.get(owner).copied().unwrap_or(Color::Gray);
                paint(painter, angle, radius, color);
            }
            radius += DOT;
        }
    }
}

/// Arcs traced in one colour: the selected node's highlight.
struct Arcs<'a> {
    /// `(start, sweep)` pairs.
    arcs: &'a [(f64, f64)],
    /// Radii to trace them at.
    radii: (f64, f64),
    /// Their colour.
    color: Color,
}

impl Shape for Arcs<'_> {
    fn draw(&self, painter: &mut Painter<'_, '_>) {
        let mut radius = self.radii.0;
        while radius <= self.radii.1 + 1e-9 {
            let per_radian = f64::from(steps_for(radius)) / TAU;
            for &(start, sweep) in self.arcs {
                // At least one dot per arc, however thin: with thousands of
                // nodes an arc is far narrower than a dot.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let steps = (sweep * per_radian).ceil().max(1.0) as u32;
                for step in 0..=steps {
                    let angle = start + sweep * f64::from(step) / f64::from(steps.max(1));
                    paint(painter, angle, radius, self.color);
                }
            }
            radius += DOT;
        }
    }
}

/// Instances: one dot each where their key hashes, in their node's colour.
struct Dots<'a> {
    /// `(angle, state of the node running it)`.
    dots: &'a [(f64, NodeState)],
    /// Where to draw them.
    radius: f64,
}

impl Shape for Dots<'_> {
    fn draw(&self, painter: &mut Painter<'_, '_>) {
        for &(angle, state) in self.dots {
            paint(painter, angle, self.radius, theme::state_color(state));
        }
    }
}

/// Dots to sample around a circle of `radius`: two per dot of
/// circumference, so no gaps.
fn steps_for(radius: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let steps = (TAU * radius / DOT * 2.0).ceil().clamp(8.0, 100_000.0) as u32;
    steps
}

fn step_angle(step: u32, steps: u32) -> f64 {
    TAU * (f64::from(step) + 0.5) / f64::from(steps)
}

fn paint(painter: &mut Painter<'_, '_>, angle: f64, radius: f64, color: Color) {
    let (x, y) = point_at(angle, radius);
    if let Some((column, row)) = painter.get_point(x, y) {
        painter.paint(column, row, color);
    }
}

/// Rows the ring keeps at least before a legend takes any from it.
const MIN_RING_ROWS: u16 = 6;

/// Draws the ring panel in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, app: &App, hits: &mut Hits) {
    let by_data = app.ring_colors == RingColors::Data;
    let extra = if by_data {
        vec![Span::styled("by data share ", theme::info())]
    } else {
        vec![Span::styled(format!("{} points ", format::count(app.ring.points())), theme::dim())]
    };
    let outer = block(title("ring", extra));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if inner.width < 4 || inner.height < 2 {
        return;
    }
    let legend = if by_data { legend(app, usize::from(inner.width), inner.height) } else { Vec::new() };
    let legend_rows = u16::try_from(legend.len()).unwrap_or(u16::MAX);
    let legend_rows = if inner.height >= legend_rows.saturating_add(MIN_RING_ROWS) { legend_rows } else { 0 };
    let [inner, legend_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(legend_rows)]).areas::<2>(inner);
    if legend_rows > 0 {
        frame.render_widget(Paragraph::new(legend), legend_area);
    }
    let bounds = Bounds::for_cells(inner.width, inner.height);
    hits.ring = Some(RingHit { area: inner, bounds });
    let radius = bounds.radius();
    let band = (radius - 2.0 * DOT).max(0.0);
    let colors: Vec<Color> = if by_data {
        app.ring_data.iter().map(|&ratio| theme::data_share_color(ratio)).collect()
    } else {
        app.ring_states.iter().map(|&state| theme::state_color(state)).collect()
    };
    let selected = app.selected_node();
    // The label must fit inside the band: its chord at the middle rows.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let label_width = (band * 1.6).floor().max(0.0) as usize;
    let center_lines = center_label(app, selected, label_width);
    let canvas = Canvas::default().marker(Marker::Braille).x_bounds(bounds.x).y_bounds(bounds.y).paint(|ctx| {
        if app.ring.is_empty() {
            ctx.draw(&Band { buckets: &[0; BUCKETS], colors: &[Color::DarkGray], radii: (radius, radius) });
        } else {
            ctx.draw(&Band { buckets: app.ring.buckets(), colors: &colors, radii: (band, radius) });
        }
        if !app.instance_dots.is_empty() {
            ctx.draw(&Dots { dots: &app.instance_dots, radius: (band - 3.0 * DOT).max(0.0) });
        }
        if !app.selected_dots.is_empty() {
            // Radial ticks through the dots: zero-sweep arcs over a few radii.
            let ticks: Vec<(f64, f64)> = app.selected_dots.iter().map(|&angle| (angle, 0.0)).collect();
            let across = ((band - 5.0 * DOT).max(0.0), (band - DOT).max(0.0));
            ctx.draw(&Arcs { arcs: &ticks, radii: across, color: theme::RING_HIGHLIGHT });
        }
        if !app.selected_arcs.is_empty() {
            let outside = (radius + 2.0 * DOT, radius + 3.0 * DOT);
            ctx.draw(&Arcs { arcs: &app.selected_arcs, radii: outside, color: theme::RING_HIGHLIGHT });
        }
        // Labels land on rows by ratatui's own rounding: aim at the
        // middle of the wanted row so each line gets its own.
        let first_row = (inner.height / 2).saturating_sub(u16::try_from(center_lines.len() / 2).unwrap_or(0));
        let row_height = (bounds.y[1] - bounds.y[0]) / f64::from(inner.height.saturating_sub(1).max(1));
        for (index, line) in center_lines.iter().enumerate() {
            // One unit is one cell across.
            #[allow(clippy::cast_precision_loss)]
            let x = -(line.width() as f64) / 2.0;
            let row = f64::from(first_row) + f64::from(u16::try_from(index).unwrap_or(0));
            let y = bounds.y[1] - (row + 0.5) * row_height;
            ctx.print(x, y, line.clone());
        }
    });
    frame.render_widget(canvas, inner);
}

/// The text in the ring's middle: the selected node and its share of the
/// ring (or of the data, when the ring shows data shares), when it fits
/// inside the circle.
fn center_label(app: &App, selected: Option<&NodeRow>, width: usize) -> Vec<Line<'static>> {
    if width < 6 {
        return Vec::new();
    }
    match selected {
        Some(node) => {
            let state = node.state;
            let (facts, color) = if app.ring_colors == RingColors::Data {
                let ratio = node.ring_index.and_then(|index| app.ring_data.get(index).copied().flatten());
                (format!("data {}", format::percent(node.data_share * 100.0)), theme::data_share_color(ratio))
            } else {
                (format!("{state} {}", format::percent(node.share * 100.0)), theme::state_color(state))
            };
            vec![
                Line::styled(format::truncate(&node.name, width), theme::state_style(state)),
                Line::styled(format::truncate(&facts, width), Style::new().fg(color)),
            ]
        }
        None if app.ring.is_empty() => vec![Line::styled("no nodes", theme::dim())],
        None => Vec::new(),
    }
}

/// The legend under a ring coloured by data share, `width` cells wide: the
/// colours' scale, then the nodes holding the most data with their shares
/// (more rows of them on a tall panel).
fn legend(app: &App, width: usize, height: u16) -> Vec<Line<'static>> {
    let swatch = |color| Span::styled("■", Style::new().fg(color));
    // Roomy, then compact labels with what they compare to, then bare.
    let scale = |roomy: bool, lead: bool| {
        let mut spans = Vec::new();
        if lead {
            spans.push(Span::styled("vs even ", theme::dim()));
        }
        spans.push(swatch(theme::DATA_NONE));
        spans.push(Span::styled(if roomy { " none" } else { "0" }, theme::dim()));
        for (_, color, short, long) in theme::DATA_SHARES {
            spans.push(Span::raw(" "));
            spans.push(swatch(color));
            spans.push(Span::styled(if roomy { format!(" {long}") } else { short.to_string() }, theme::dim()));
        }
        Line::from(spans)
    };
    let forms = [scale(true, true), scale(false, true), scale(false, false)];
    let fitting = forms.iter().position(|form| form.width() <= width).unwrap_or(forms.len() - 1);
    let mut lines: Vec<Line<'static>> = forms.into_iter().skip(fitting).take(1).collect();
    let mut holders: Vec<&NodeRow> = app.nodes.iter().filter(|node| node.data.0 > 0).collect();
    if holders.is_empty() {
        lines.push(Line::styled(format::truncate("no objects stored", width), theme::dim()));
        return lines;
    }
    holders.sort_by(|a, b| b.data_share.total_cmp(&a.data_share).then_with(|| a.name.cmp(&b.name)));
    let rows = if height >= 30 { 3 } else { 1 };
    let mut holders = holders.into_iter().peekable();
    for _ in 0..rows {
        let mut spans: Vec<Span<'static>> = Vec::new();
        let mut used = 0;
        while let Some(node) = holders.peek() {
            let ratio = node.ring_index.and_then(|index| app.ring_data.get(index).copied().flatten());
            let text = format!(" {} {}", format::truncate(&node.name, 12), format::percent(node.data_share * 100.0));
            let needed = usize::from(used > 0) + 1 + text.chars().count();
            if used + needed > width && used > 0 {
                break;
            }
            if used > 0 {
                spans.push(Span::raw(" "));
            }
            spans.push(swatch(theme::data_share_color(ratio)));
            spans.push(Span::raw(format::truncate(&text, width.saturating_sub(used + 1))));
            used += needed;
            holders.next();
        }
        if spans.is_empty() {
            break;
        }
        lines.push(Line::from(spans));
    }
    lines
}
