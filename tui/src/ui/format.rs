//! Short, fixed-width renderings of numbers for table cells: bytes, rates,
//! durations, percentages and wall-clock times. Pure and allocation-light.

/// Bytes with a binary unit, at most five characters: `512B`, `1.5K`, `15G`.
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
    #[allow(clippy::cast_precision_loss)] // a display value
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled >= 1000.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value}B")
    } else if scaled < 9.95 {
        format!("{scaled:.1}{}", UNITS[unit])
    } else {
        format!("{scaled:.0}{}", UNITS[unit])
    }
}

/// Memory in use over memory installed: `7.8G/16G`, or `-` when unknown.
pub fn used_of(used: u64, total: u64) -> String {
    if total == 0 { "-".to_string() } else { format!("{}/{}", bytes(used), bytes(total)) }
}

/// Received and sent rates: `1.2M/340K`.
pub fn rx_tx(rx: u64, tx: u64) -> String {
    format!("{}/{}", bytes(rx), bytes(tx))
}

/// A rate for chart labels: `1.2M/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped, for display
    let whole = bytes_per_sec.clamp(0.0, 1e18) as u64;
    format!("{}/s", bytes(whole))
}

/// A percentage with one decimal: `12.3%`.
pub fn percent(value: f64) -> String {
    if value.is_finite() { format!("{value:.1}%") } else { "-".to_string() }
}

/// The suspicion level: `0.42`, `12.5`, or `≥100` once it stops meaning much.
pub fn phi(value: f64) -> String {
    if value.is_nan() {
        "-".to_string()
    } else if value >= 100.0 {
        "≥100".to_string()
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A round-trip time from milliseconds: `0.42ms`, `12.5ms`, `340ms`,
/// `1.2s`.
pub fn rtt(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else if ms < 1_000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1_000.0)
    }
}

/// How long ago, from milliseconds: `120ms`, `3.2s`, `45s`, `12m`, `3h`, `4d`.
pub fn ago(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100),
        10_000..120_000 => format!("{}s", ms / 1_000),
        120_000..7_200_000 => format!("{}m", ms / 60_000),
        7_200_000..172_800_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// An uptime in its two largest units: `3d 4h`, `5h 12m`, `12m 3s`, `42s`.
pub fn uptime(secs: u64) -> String {
    let (days, hours, minutes, seconds) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// The UTC time of day of a Unix timestamp in milliseconds: `12:03:04`.
/// UTC because the snapshot carries no time zone and the view must not
/// read the clock or the environment.
pub fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3_600, secs / 60 % 60, secs % 60)
}

/// A count with thin thousands separators: `12,345`.
pub fn count(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `text` cut to `width` characters, with `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Whether `haystack` contains `needle`, ignoring ASCII case. An empty
/// needle matches everything.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_fit_five_characters() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(999), "999B");
        assert_eq!(bytes(1_536), "1.5K");
        assert_eq!(bytes(16 * 1024 * 1024 * 1024), "16G");
        assert_eq!(bytes(8_374_000_000), "7.8G");
        assert_eq!(bytes(1023 * 1024), "1.0M");
        for value in [0, 1, 999, 1000, 1023, 1024, 10_239, 1 << 20, u64::MAX] {
            assert!(bytes(value).chars().count() <= 5, "{value} → {}", bytes(value));
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago(120), "120ms");
        assert_eq!(ago(3_250), "3.2s");
        assert_eq!(ago(45_000), "45s");
        assert_eq!(ago(720_000), "12m");
        assert_eq!(ago(4 * 86_400_000), "4d");
        assert_eq!(uptime(3 * 86_400 + 4 * 3_600 + 5), "3d 4h");
        assert_eq!(uptime(42), "42s");
        assert_eq!(utc_time(1_700_000_000_000), "22:13:20");
        assert_eq!(rtt(0.42), "0.42ms");
        assert_eq!(rtt(12.46), "12.5ms");
        assert_eq!(rtt(340.2), "340ms");
        assert_eq!(rtt(1_240.0), "1.2s");
    }

    #[test]
    fn small_helpers() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert!(contains_ignore_case("Node-3", "node"));
        assert!(!contains_ignore_case("a", "ab"));
        assert_eq!(phi(0.423), "0.42");
        assert_eq!(phi(f64::INFINITY), "≥100");
        assert_eq!(percent(12.345), "12.3%");
    }
}
