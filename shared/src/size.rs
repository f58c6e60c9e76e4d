//! Human-readable byte sizes for command-line flags (`--data-quota 10GiB`)
//! and for showing them back.
//!
//! Both the decimal (`kB`, `MB`, `GB`, `TB`: powers of 1000) and the binary
//! (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024) units are read, with any
//! letter case; a bare number is bytes. A one-letter unit (`10G`) is
//! refused: whether it means 10⁹ or 2³⁰ bytes differs between tools, and a
//! quota that is 7 % off is a surprise nobody wants.

/// The units read, lowercased, with their size in bytes.
const UNITS: [(&str, u64); 10] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("pib", 1 << 50),
];

/// What a one-letter unit should have been written as.
const ONE_LETTER: [(&str, &str); 5] = [("k", "K"), ("m", "M"), ("g", "G"), ("t", "T"), ("p", "P")];

/// Parses `10GiB`, `500MB`, `1.5GiB`, `4096`: more than zero bytes, at most
/// `u64::MAX`. A fraction is rounded down to whole bytes.
///
/// # Errors
/// Returns a message naming the bad input when it is not a size, is zero,
/// or does not fit 64 bits.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let hint = "try 10GiB, 500MB or a number of bytes";
    let multiplier = if unit.is_empty() {
        1
    } else if let Some((_, bytes)) = UNITS.iter().find(|(name, _)| *name == unit) {
        *bytes
    } else if let Some((_, letter)) = ONE_LETTER.iter().find(|(name, _)| *name == unit) {
        return Err(format!(
            "\"{text}\" has an ambiguous unit: write {number}{letter}iB (powers of 1024) or {number}{letter}B \
             (powers of 1000)"
        ));
    } else {
        return Err(format!("\"{text}\" is not a size: unknown unit; {hint}"));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("\"{text}\" is not a size: no number; {hint}"));
    }
    if fraction.contains('.') {
        return Err(format!("\"{text}\" is not a size: more than one decimal point; {hint}"));
    }
    let too_big = || format!("\"{text}\" is too large: at most {} bytes", u64::MAX);
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_big())? };
    let mut bytes = whole.checked_mul(u128::from(multiplier)).ok_or_else(too_big)?;
    // The fraction exactly, as digits over a power of ten; digits past the
    // 20th are worth less than a byte of any unit here, and only round down.
    let digits = &fraction[..fraction.len().min(20)];
    if !digits.is_empty() {
        let numerator: u128 = digits.parse().map_err(|_| format!("\"{text}\" is not a size; {hint}"))?;
        let denominator = 10u128.pow(u32::try_from(digits.len()).unwrap_or(20));
        bytes = bytes.checked_add(numerator * u128::from(multiplier) / denominator).ok_or_else(too_big)?;
    }
    let bytes = u64::try_from(bytes).map_err(|_| too_big())?;
    if bytes == 0 {
        return Err(format!("\"{text}\" must be more than zero bytes"));
    }
    Ok(bytes)
}

/// Shows `bytes` in the largest binary unit that keeps it at least 1, with
/// one decimal when that unit is not bytes: `512 B`, `1.5 KiB`, `10.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const NAMES: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1 << 10 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >= 1 << (10 * (unit + 2)) {
        unit += 1;
    }
    // Tenths of the unit, rounded down so a nearly full quota never shows
    // as full.
    let tenths = u128::from(bytes) * 10 / (1u128 << (10 * (unit + 1)));
    format!("{}.{} {}", tenths / 10, tenths % 10, NAMES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_and_bare_bytes_are_read() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 2 mib "), Ok(2 << 20));
        assert_eq!(parse_size("1kB"), Ok(1_000));
        assert_eq!(parse_size("1KiB"), Ok(1_024));
        assert_eq!(parse_size("3TiB"), Ok(3 << 40));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("1.0009KB"), Ok(1_000), "fractions of a byte round down");
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn zero_garbage_ambiguity_and_overflow_are_refused_with_a_hint() {
        for zero in ["0", "0GiB", "0.0MB", "0.0001B"] {
            let err = parse_size(zero).unwrap_err();
            assert!(err.contains("more than zero"), "{zero}: {err}");
        }
        for garbage in ["", "GiB", "ten", "10 gigs", "1.2.3MB", "-5MB", "10GiBs", "."] {
            let err = parse_size(garbage).unwrap_err();
            assert!(err.contains("not a size") && err.contains(&format!("\"{garbage}\"")), "{garbage}: {err}");
        }
        let err = parse_size("10G").unwrap_err();
        assert!(err.contains("10GiB") && err.contains("10GB"), "{err}");
        for huge in ["18446744073709551616", "20000000TiB", "99999999999999999999999999999999999999999"] {
            let err = parse_size(huge).unwrap_err();
            assert!(err.contains("too large"), "{huge}: {err}");
        }
    }

    #[test]
    fn sizes_show_in_the_largest_binary_unit_rounded_down() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
        assert_eq!(format_size((1 << 30) - 1), "1023.9 MiB");
        assert_eq!(format_size(u64::MAX), "15.9 EiB");
    }
}
