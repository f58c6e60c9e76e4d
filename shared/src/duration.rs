//! Human-readable durations for command-line flags and config files.

use std::time::Duration;

/// Parses `500ms`, `5s`, `1m`, `1h30m`, `24h`.
///
/// # Errors
/// Returns a message naming the bad input when it is not a duration or is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text.trim())
        .map_err(|err| format!("\"{text}\" is not a duration ({err}); try 500ms, 5s or 1m"))?;
    if value.is_zero() {
        return Err(format!("\"{text}\" must be longer than zero"));
    }
    Ok(value)
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
}
