//! Certificate lifetimes: when a certificate is due for renewal, when it
//! has expired, and which lifetimes an operator may choose (README.md,
//! "Certificates").
//!
//! Pure: the time is an argument (Unix seconds), so both sides — the agent
//! renewing its client certificate, the console renewing its own — decide
//! the same way under test.

use std::time::Duration;

/// The shortest agent certificate lifetime accepted: long enough for a
/// renewal round trip at two thirds of it (tests use 30 s).
pub const MIN_AGENT_CERT_TTL: Duration = Duration::from_secs(30);
/// The longest agent certificate lifetime accepted: a stolen agent key is
/// useful at most this long once revoked credentials are pruned, and the
/// CA (20 years) outlives it by far.
pub const MAX_AGENT_CERT_TTL: Duration = Duration::from_secs(365 * 86_400);
/// The default agent certificate lifetime.
pub const DEFAULT_AGENT_CERT_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How long before the CA expires operators are warned.
pub const CA_WARNING: Duration = Duration::from_secs(90 * 86_400);

/// When a certificate is valid, Unix seconds (its `notBefore` and
/// `notAfter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this.
    pub not_before_unix: u64,
    /// Not valid after this.
    pub not_after_unix: u64,
}

impl Validity {
    /// The moment two thirds of its life have passed: from then on it is
    /// renewed, so a third of its life remains for retries.
    pub fn renew_at_unix(&self) -> u64 {
        let life = self.not_after_unix.saturating_sub(self.not_before_unix);
        self.not_before_unix.saturating_add(life / 3 * 2 + life % 3 * 2 / 3)
    }

    /// Whether it is due for renewal at `now_unix` (less than a third of its
    /// life left, or expired).
    pub fn renewal_due(&self, now_unix: u64) -> bool {
        now_unix >= self.renew_at_unix()
    }

    /// Whether it has expired at `now_unix`.
    pub fn expired(&self, now_unix: u64) -> bool {
        now_unix > self.not_after_unix
    }

    /// How long until it is due for renewal (zero when due).
    pub fn until_renewal(&self, now_unix: u64) -> Duration {
        Duration::from_secs(self.renew_at_unix().saturating_sub(now_unix))
    }

    /// Whether its expiry is within `warning` of `now_unix`.
    pub fn expires_within(&self, warning: Duration, now_unix: u64) -> bool {
        self.not_after_unix <= now_unix.saturating_add(warning.as_secs())
    }
}

/// Checks an agent certificate lifetime an operator chose.
///
/// # Errors
/// A sentence naming the accepted range when it is outside
/// [`MIN_AGENT_CERT_TTL`]..=[`MAX_AGENT_CERT_TTL`].
pub fn check_agent_cert_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < MIN_AGENT_CERT_TTL || ttl > MAX_AGENT_CERT_TTL {
        return Err(format!(
            "agent_cert_ttl must be between 30s and 365 days, not \"{}\": agents renew at two thirds of it, so it must leave time for a renewal, and a year is the most a stolen key should last",
            crate::duration::format_duration(ttl)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        let thirty_days = 30 * 86_400;
        let validity = Validity { not_before_unix: 1_000, not_after_unix: 1_000 + thirty_days };
        assert_eq!(validity.renew_at_unix(), 1_000 + 20 * 86_400);
        assert!(!validity.renewal_due(1_000 + 20 * 86_400 - 1));
        assert!(validity.renewal_due(1_000 + 20 * 86_400));
        assert!(validity.renewal_due(1_000 + thirty_days + 5), "an expired one is due too");
        assert_eq!(validity.until_renewal(1_000), Duration::from_secs(20 * 86_400));
        assert_eq!(validity.until_renewal(1_000 + thirty_days), Duration::ZERO);

        let short = Validity { not_before_unix: 100, not_after_unix: 130 };
        assert_eq!(short.renew_at_unix(), 120);
        let odd = Validity { not_before_unix: 0, not_after_unix: 31 };
        assert_eq!(odd.renew_at_unix(), 20, "two thirds of 31 s, rounded down");
    }

    #[test]
    fn expiry_and_the_warning_window() {
        let validity = Validity { not_before_unix: 0, not_after_unix: 100 * 86_400 };
        assert!(!validity.expired(100 * 86_400));
        assert!(validity.expired(100 * 86_400 + 1));
        assert!(!validity.expires_within(CA_WARNING, 9 * 86_400));
        assert!(validity.expires_within(CA_WARNING, 10 * 86_400));
    }

    #[test]
    fn absurd_agent_certificate_lifetimes_are_refused() {
        assert!(check_agent_cert_ttl(Duration::from_secs(30)).is_ok());
        assert!(check_agent_cert_ttl(DEFAULT_AGENT_CERT_TTL).is_ok());
        assert!(check_agent_cert_ttl(Duration::from_secs(365 * 86_400)).is_ok());
        let err = check_agent_cert_ttl(Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("between 30s and 365 days") && err.contains("\"5s\""), "{err}");
        assert!(check_agent_cert_ttl(Duration::from_secs(10 * 365 * 86_400)).is_err());
        assert!(check_agent_cert_ttl(Duration::ZERO).is_err());
    }
}
