//! Reading a certificate's validity, for the renewal decisions of
//! [`ringwatch_shared::lifetime`] (README.md, "Certificates").

use ringwatch_shared::lifetime::Validity;

/// The validity period of the DER certificate `der`.
///
/// # Errors
/// A sentence when it does not parse as X.509.
pub fn validity(der: &[u8]) -> Result<Validity, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der).map_err(|err| format!("not an X.509 certificate: {err}"))?;
    let seconds = |time: x509_parser::time::ASN1Time| u64::try_from(time.timestamp()).unwrap_or(0);
    Ok(Validity {
        not_before_unix: seconds(parsed.validity().not_before),
        not_after_unix: seconds(parsed.validity().not_after),
    })
}

/// `unix` seconds as a UTC date and time for messages (`2026-11-28 16:31:22 UTC`).
pub fn format_unix(unix: u64) -> String {
    let days = unix / 86_400;
    let rest = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3_600, rest % 3_600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_utc() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(1_795_883_482), "2026-11-28 16:31:22 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert!(validity(b"garbage").is_err());
    }
}
