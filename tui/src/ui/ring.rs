//! The ring as the console draws it: geometry (ring position ↔ angle ↔
//! canvas point ↔ terminal cell) and a cache of the [`Ring`] with what
//! drawing needs, rebuilt only when the set of `(name, weight)` changes.
//!
//! Angles are in radians, clockwise from 12 o'clock, like the ring's
//! positions: `angle = position / 2^64 × 2π`. The arc from one point to the
//! next belongs to the next point's node (the convention of
//! [`Ring::shares`]: a key belongs to the first point clockwise from it).
//!
//! Canvas coordinates are in units of one cell *width*. A terminal cell is
//! about twice as tall as wide, so a canvas `w` cells wide and `h` cells tall
//! spans `w` units across and `2h` units up: one unit is then as long on
//! screen along both axes, and a circle stays round at any size.

use std::f64::consts::TAU;

use ratatui::layout::Rect;
use ringwatch_shared::ring::Ring;

/// Angular resolution of the drawing cache: far finer than any terminal's
/// braille dots around a circle.
pub const BUCKETS: usize = 4096;

/// How many cell widths a terminal cell is tall.
pub const CELL_ASPECT: f64 = 2.0;

/// Room left between the ring and the canvas edge, in units, for the
/// highlight drawn outside the selected node's arcs.
pub const EDGE_MARGIN: f64 = 2.0;

/// 2^64, the length of the ring.
const RING_LENGTH: f64 = 18_446_744_073_709_551_616.0;

/// The angle of a ring position, in `[0, 2π)`.
#[allow(clippy::cast_precision_loss)] // exact: the top 53 bits fit an f64
pub fn angle_of(position: u64) -> f64 {
    // Rounding all 64 bits could give 2^64, a full turn.
    (position >> 11) as f64 / (1_u64 << 53) as f64 * TAU
}

/// The ring position at `angle` (any real angle; it is taken modulo 2π).
pub fn position_of(angle: f64) -> u64 {
    let turn = normalize(angle) / TAU;
    // `turn` is in [0, 1), so the product fits; `as` saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let position = (turn * RING_LENGTH) as u64;
    position
}

/// `angle` brought into `[0, 2π)`.
pub fn normalize(angle: f64) -> f64 {
    if !angle.is_finite() {
        return 0.0;
    }
    let angle = angle.rem_euclid(TAU);
    if angle >= TAU { 0.0 } else { angle }
}

/// The canvas point at `angle` and distance `radius` from the centre.
pub fn point_at(angle: f64, radius: f64) -> (f64, f64) {
    (radius * angle.sin(), radius * angle.cos())
}

/// The angle of the canvas point `(x, y)` seen from the centre.
pub fn angle_at(x: f64, y: f64) -> f64 {
    normalize(x.atan2(y))
}

/// The visible part of canvas space for a canvas of `width` × `height`
/// cells, centred on the ring's centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Left and right edges, in units.
    pub x: [f64; 2],
    /// Bottom and top edges, in units.
    pub y: [f64; 2],
}

impl Bounds {
    /// Bounds that keep one unit equally long on screen across and up.
    pub fn for_cells(width: u16, height: u16) -> Self {
        let half_width = f64::from(width) / 2.0;
        let half_height = f64::from(height) * CELL_ASPECT / 2.0;
        Self { x: [-half_width, half_width], y: [-half_height, half_height] }
    }

    /// The ring's radius: as large as fits, leaving [`EDGE_MARGIN`].
    pub fn radius(&self) -> f64 {
        let half = ((self.x[1] - self.x[0]) / 2.0).min((self.y[1] - self.y[0]) / 2.0);
        (half - EDGE_MARGIN).max(0.0)
    }

    /// The canvas point at the centre of terminal cell `(column, row)` of a
    /// canvas drawn in `area`, or `None` outside it.
    pub fn cell_center(&self, area: Rect, column: u16, row: u16) -> Option<(f64, f64)> {
        if area.is_empty() || !area.contains((column, row).into()) {
            return None;
        }
        let unit_x = (self.x[1] - self.x[0]) / f64::from(area.width);
        let unit_y = (self.y[1] - self.y[0]) / f64::from(area.height);
        let x = self.x[0] + (f64::from(column - area.x) + 0.5) * unit_x;
        let y = self.y[1] - (f64::from(row - area.y) + 0.5) * unit_y;
        Some((x, y))
    }
}

/// The ring and what drawing it needs, for one set of `(name, weight)`.
#[derive(Debug, Default)]
pub struct RingCache {
    /// The `(name, weight)` pairs it was built from, sorted: compared with
    /// each snapshot to know when to rebuild.
    key: Vec<(String, u32)>,
    /// The ring itself (clicks ask it who owns an angle).
    ring: Ring,
    /// Node names, sorted: a node's index here is its index everywhere in
    /// the cache.
    names: Vec<String>,
    /// The owner (index into `names`) of the middle of each of [`BUCKETS`]
    /// equal slices of the circle; empty when the ring is.
    buckets: Vec<u32>,
    /// Each node's share of the ring, by index.
    shares: Vec<f64>,
    /// How many virtual points the ring has.
    points: usize,
}

impl RingCache {
    /// Whether the cache was built from exactly these `(name, weight)`
    /// pairs (in any order).
    pub fn is_current(&self, nodes: &[(&str, u32)]) -> bool {
        self.is_built_from(&ring_key(nodes.iter().copied()))
    }

    /// Whether the cache was built from `key` (as [`ring_key`] makes it).
    pub fn is_built_from(&self, key: &[(&str, u32)]) -> bool {
        same_key(key, &self.key)
    }

    /// The `(name, weight)` pairs it was built from, sorted by name.
    pub fn key(&self) -> &[(String, u32)] {
        &self.key
    }

    /// Builds the ring over `nodes` and its drawing cache.
    pub fn build(mut nodes: Vec<(String, u32)>) -> Self {
        nodes.sort_unstable();
        nodes.dedup_by(|a, b| a.0 == b.0);
        let ring = Ring::new(nodes.iter().cloned());
        let names: Vec<String> = ring.nodes().map(str::to_string).collect();
        let index_of = |name: &str| names.binary_search_by(|probe| probe.as_str().cmp(name)).ok();
        let shares_by_name = ring.shares();
        let shares = names.iter().map(|name| shares_by_name.get(name.as_str()).copied().unwrap_or(0.0)).collect();
        let mut points = 0;
        let mut buckets = Vec::new();
        if let Some((_, first)) = ring.points().next() {
            let first = index_of(first).unwrap_or(0);
            buckets.reserve(BUCKETS);
            let mut iter = ring.points().peekable();
            for bucket in 0..BUCKETS {
                let middle = bucket_middle(bucket);
                while iter.next_if(|&(position, _)| position < middle).is_some() {
                    points += 1;
                }
                let owner = iter.peek().and_then(|&(_, name)| index_of(name)).unwrap_or(first);
                buckets.push(u32::try_from(owner).unwrap_or(u32::MAX));
            }
            points += iter.count();
        }
        Self { key: nodes, ring, names, buckets, shares, points }
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// How many virtual points the ring has.
    pub fn points(&self) -> usize {
        self.points
    }

    /// How many nodes the ring has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The index of `name` in the cache.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|probe| probe.as_str().cmp(name)).ok()
    }

    /// The share of the ring of the node at `index`.
    pub fn share(&self, index: usize) -> f64 {
        self.shares.get(index).copied().unwrap_or(0.0)
    }

    /// The node (index) owning the middle of each of [`BUCKETS`] slices.
    pub fn buckets(&self) -> &[u32] {
        &self.buckets
    }

    /// The node owning `angle`: the node of the first point at or
    /// clockwise from it. Exact (it asks the ring), for clicks.
    pub fn owner_at(&self, angle: f64) -> Option<&str> {
        let target = position_of(angle);
        self.ring
            .points()
            .find(|&(position, _)| position >= target)
            .or_else(|| self.ring.points().next())
            .map(|(_, name)| name)
    }

    /// The arcs `name` owns, as `(start angle, sweep)` pairs, adjacent arcs
    /// merged. One pass over the ring; called when the selection changes.
    pub fn arcs_of(&self, name: &str) -> Vec<(f64, f64)> {
        let mut arcs: Vec<(f64, f64)> = Vec::new();
        let Some((last, _)) = self.ring.points().last() else {
            return arcs;
        };
        if self.points == 1 {
            return vec![(0.0, TAU)];
        }
        let mut previous = last;
        let mut previous_was_ours = false;
        for (position, owner) in self.ring.points() {
            let ours = owner == name;
            if ours {
                let sweep = angle_of(position.wrapping_sub(previous));
                match arcs.last_mut() {
                    Some((_, last_sweep)) if previous_was_ours => *last_sweep += sweep,
                    _ => arcs.push((angle_of(previous), sweep)),
                }
            }
            previous_was_ours = ours;
            previous = position;
        }
        arcs
    }
}

/// `(name, weight)` pairs sorted and without repeated names: what the
/// cache is keyed by.
pub fn ring_key<'a>(nodes: impl Iterator<Item = (&'a str, u32)>) -> Vec<(&'a str, u32)> {
    let mut key: Vec<(&str, u32)> = nodes.collect();
    key.sort_unstable();
    key.dedup_by(|a, b| a.0 == b.0);
    key
}

/// Whether a borrowed and an owned key are the same.
pub fn same_key(key: &[(&str, u32)], owned: &[(String, u32)]) -> bool {
    key.len() == owned.len()
        && key
            .iter()
            .zip(owned)
            .all(|(&(name, weight), (other, other_weight))| name == other && weight == *other_weight)
}

/// The ring position in the middle of bucket `bucket`.
fn bucket_middle(bucket: usize) -> u64 {
    let slices = 2 * BUCKETS as u128;
    let middle = ((2 * bucket as u128 + 1) << 64) / slices;
    u64::try_from(middle).unwrap_or(u64::MAX)
}

/// The bucket `angle` falls in.
pub fn bucket_of(angle: f64) -> usize {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let bucket = (normalize(angle) / TAU * BUCKETS as f64) as usize;
    bucket.min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(names: &[(&str, u32)]) -> RingCache {
        RingCache::build(names.iter().map(|&(name, weight)| (name.to_string(), weight)).collect())
    }

    #[test]
    fn angles_follow_ring_positions_clockwise_from_the_top() {
        assert_eq!(angle_of(0), 0.0);
        assert!((angle_of(1 << 62) - TAU / 4.0).abs() < 1e-12, "a quarter of the ring is 3 o'clock");
        assert!((angle_of(1 << 63) - TAU / 2.0).abs() < 1e-12);
        assert!(angle_of(u64::MAX) < TAU);
        for position in [0, 1 << 40, 1 << 62, 3 << 62, u64::MAX / 3] {
            let back = position_of(angle_of(position));
            let error = back.abs_diff(position);
            assert!(error < 1 << 12, "{position} → {back}");
        }
        let (x, y) = point_at(TAU / 4.0, 1.0);
        assert!((x - 1.0).abs() < 1e-12 && y.abs() < 1e-12, "3 o'clock is to the right");
        assert!((angle_at(0.0, 1.0)).abs() < 1e-12);
        assert!((angle_at(-1.0, 0.0) - 3.0 * TAU / 4.0).abs() < 1e-12, "9 o'clock is three quarters round");
        assert_eq!(normalize(-TAU / 4.0), 3.0 * TAU / 4.0);
        assert_eq!(normalize(f64::NAN), 0.0);
    }

    #[test]
    fn aspect_correction_keeps_the_circle_round() {
        for (width, height) in [(30, 15), (80, 24), (26, 12), (100, 10), (10, 40), (1, 1)] {
            let bounds = Bounds::for_cells(width, height);
            // On screen a cell is 1 wide and CELL_ASPECT tall: one unit must
            // be equally long along both axes.
            let screen_per_unit_x = f64::from(width) / (bounds.x[1] - bounds.x[0]);
            let screen_per_unit_y = f64::from(height) * CELL_ASPECT / (bounds.y[1] - bounds.y[0]);
            assert!((screen_per_unit_x - screen_per_unit_y).abs() < 1e-12, "{width}×{height}");
            let radius = bounds.radius();
            assert!(radius >= 0.0);
            assert!(radius <= bounds.x[1] && radius <= bounds.y[1], "the circle fits in {width}×{height}");
        }
        // A ring in 40×20 cells: 40 units across, 40 up, so 20 − margin radius.
        assert_eq!(Bounds::for_cells(40, 20).radius(), 20.0 - EDGE_MARGIN);
    }

    #[test]
    fn a_click_maps_to_the_cell_centre_and_back_to_its_angle() {
        let area = Rect::new(10, 5, 40, 20);
        let bounds = Bounds::for_cells(40, 20);
        assert_eq!(bounds.cell_center(area, 9, 5), None);
        assert_eq!(bounds.cell_center(area, 50, 5), None);
        let (x, y) = bounds.cell_center(area, 10, 5).unwrap();
        assert_eq!((x, y), (-19.5, 19.0), "top-left cell");
        // The cell straight right of the centre is at 3 o'clock.
        let (x, y) = bounds.cell_center(area, 10 + 38, 5 + 10).unwrap();
        assert!(x > 15.0 && y.abs() <= 1.0, "({x}, {y})");
        assert!((angle_at(x, y) - TAU / 4.0).abs() < 0.1);
        // Straight up from the centre: 12 o'clock.
        let (x, y) = bounds.cell_center(area, 10 + 20, 5 + 1).unwrap();
        assert!(angle_at(x, y) < 0.05 || angle_at(x, y) > TAU - 0.05);
    }

    #[test]
    fn the_owner_of_an_angle_is_the_next_point_clockwise() {
        let cache = cache(&[("a", 1), ("b", 1), ("c", 2)]);
        let ring = Ring::new([("a".to_string(), 1), ("b".to_string(), 1), ("c".to_string(), 2)]);
        let points: Vec<(u64, &str)> = ring.points().collect();
        assert_eq!(cache.points(), points.len());
        for window in points.windows(2) {
            let (before, after) = (window[0], window[1]);
            if after.0 - before.0 < 4 {
                continue;
            }
            // Anywhere strictly inside the arc before a point belongs to it.
            let inside = before.0 + (after.0 - before.0) / 2;
            assert_eq!(cache.owner_at(angle_of(inside)), Some(after.1));
        }
        // Past the last point the ring wraps to the first.
        let past_last = points[points.len() - 1].0 + (u64::MAX - points[points.len() - 1].0) / 2;
        if past_last > points[points.len() - 1].0 {
            assert_eq!(cache.owner_at(angle_of(past_last)), Some(points[0].1));
        }
    }

    #[test]
    fn buckets_and_arcs_agree_with_the_ring() {
        let cache = cache(&[("a", 1), ("b", 1), ("c", 2), ("d", 1)]);
        assert_eq!(cache.buckets().len(), BUCKETS);
        for bucket in (0..BUCKETS).step_by(7) {
            let middle = angle_of(bucket_middle(bucket));
            assert_eq!(bucket_of(middle), bucket);
            let owner = cache.buckets()[bucket] as usize;
            assert_eq!(Some(cache.names[owner].as_str()), cache.owner_at(middle), "bucket {bucket}");
        }
        // The arcs of every node tile the circle, and match its share.
        let mut total = 0.0;
        for name in ["a", "b", "c", "d"] {
            let sweep: f64 = cache.arcs_of(name).iter().map(|&(_, sweep)| sweep).sum();
            let share = cache.share(cache.index_of(name).unwrap());
            assert!((sweep / TAU - share).abs() < 1e-9, "{name}: {sweep} vs {share}");
            total += sweep;
        }
        assert!((total - TAU).abs() < 1e-9);
        assert!(cache.arcs_of("nobody").is_empty());
    }

    #[test]
    fn the_cache_knows_when_it_is_current() {
        let cache = cache(&[("a", 1), ("b", 2)]);
        assert!(cache.is_current(&[("b", 2), ("a", 1)]));
        assert!(!cache.is_current(&[("a", 1), ("b", 3)]));
        assert!(!cache.is_current(&[("a", 1)]));
        let empty = RingCache::default();
        assert!(empty.is_current(&[]));
        assert!(empty.is_empty() && empty.owner_at(1.0).is_none() && empty.arcs_of("a").is_empty());
    }
}
