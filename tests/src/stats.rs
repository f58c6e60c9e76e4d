//! Figures of the bench drivers.

use std::time::Duration;

/// The `q` quantile (0 < q ≤ 1) of `sorted` by the nearest-rank method: the
/// smallest value at least a fraction `q` of the values do not exceed.
///
/// # Panics
/// When `sorted` is empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    assert!(!sorted.is_empty(), "no values to take a quantile of");
    // Rank in 1..=len; the float round trip is exact for bench-sized lists.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Duration::from_millis(10));
        assert_eq!(quantile(&values, 0.99), Duration::from_millis(20), "p99 of 20 runs is the slowest");
        assert_eq!(quantile(&values[..1], 0.5), Duration::from_millis(1));
    }
}
