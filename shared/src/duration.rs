//! Human-readable durations for command-line flags and config files.
//!
//! Every parser here is bounded: a duration is later added to a clock
//! reading (`Instant + Duration`), which panics on overflow, so an absurd
//! value like `10000000000000000000s` must be refused where it is read.

use std::time::Duration;

/// The longest duration any flag or config value may have: ten years of
/// 365 days. Longer is never meant, and ten years can be added to any clock
/// reading without overflow. Values with a tighter limit use
/// [`parse_bounded`].
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses `500ms`, `5s`, `1m`, `1h30m`, `24h`, `7d`: longer than zero, at
/// most [`MAX_DURATION`].
///
/// # Errors
/// Returns a message naming the bad input when it is not a duration, is
/// zero, or is longer than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_bounded(text, MAX_DURATION)
}

/// Like [`parse_duration`], but at most `max` (and never more than
/// [`MAX_DURATION`]). For a command-line flag:
/// `value_parser = |text: &str| parse_bounded(text, Duration::from_secs(60))`.
///
/// # Errors
/// Returns a message naming the bad input when it is not a duration, is
/// zero, or is longer than `max`.
pub fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let max = max.min(MAX_DURATION);
    let value = parse_unbounded(text)?;
    if value.is_zero() {
        return Err(format!("\"{text}\" must be longer than zero"));
    }
    if value > max {
        return Err(format!("\"{text}\" is too long: use at most {}", format_duration(max)));
    }
    Ok(value)
}

/// Reads any duration, zero and absurd lengths included: for values whose
/// limits the caller checks with a better message (a task spec's, by
/// `task::validate`).
///
/// # Errors
/// Returns a message naming the bad input when it is not a duration.
pub fn parse_unbounded(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("\"{text}\" is not a duration ({err}); try 500ms, 5s or 1m"))
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// Serde adapter: durations in config files read and write as text (`150ms`).
pub mod serde_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `value` as text.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*value))
    }

    /// Reads a duration written as text.
    ///
    /// # Errors
    /// When the text is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: durations as text, zero and any length accepted. The
/// owner of the value checks its limits afterwards (task specs: a file's
/// error then names the field, the limit and the line, not just "invalid").
pub mod serde_unbounded {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `value` as text.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        super::serde_text::serialize(value, serializer)
    }

    /// Reads a duration written as text, without limits.
    ///
    /// # Errors
    /// When the text is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_unbounded(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration(" 24h "), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn refuses_garbage_and_zero_with_the_input_named() {
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn regression_a_duration_of_ten_quintillion_seconds_is_refused() {
        let err = parse_duration("10000000000000000000s").unwrap_err();
        assert!(err.contains("\"10000000000000000000s\" is too long"), "{err}");
        assert!(parse_duration("18446744073709551616s").is_err(), "beyond u64");
        assert!(parse_duration("999999999999years").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        assert!(parse_duration("3651d").is_err());
    }

    #[test]
    fn bounded_parsing_states_the_limit() {
        let minute = Duration::from_secs(60);
        assert_eq!(parse_bounded("1m", minute), Ok(minute));
        let err = parse_bounded("61s", minute).unwrap_err();
        assert_eq!(err, "\"61s\" is too long: use at most 1m");
        assert!(parse_bounded("0ms", minute).is_err());
        // A limit above the ceiling is the ceiling.
        assert!(parse_bounded("3651d", Duration::MAX).is_err());
    }

    #[test]
    fn unbounded_parsing_reads_zero_and_refuses_only_garbage() {
        assert_eq!(parse_unbounded("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_unbounded("10000000000000000000s"), Ok(Duration::from_secs(10_000_000_000_000_000_000)));
        assert!(parse_unbounded("soon").is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_text_makes_a_parser_panic(text in "\\PC{0,40}", digits in "[0-9]{1,40}(ns|us|ms|s|m|h|d|w|M|y)") {
            let _ = parse_duration(&text);
            let _ = parse_unbounded(&text);
            for text in [&text, &digits] {
                if let Ok(value) = parse_duration(text) {
                    proptest::prop_assert!(!value.is_zero() && value <= MAX_DURATION);
                    // What parse_duration accepts can be added to a clock.
                    proptest::prop_assert!(std::time::Instant::now().checked_add(value).is_some());
                }
            }
        }

        #[test]
        fn formatted_durations_read_back(secs in 1..=MAX_DURATION.as_secs(), nanos in 0..1_000_000_000u32) {
            let value = Duration::new(secs, nanos).min(MAX_DURATION);
            proptest::prop_assert_eq!(parse_duration(&format_duration(value)), Ok(value));
        }
    }
}
