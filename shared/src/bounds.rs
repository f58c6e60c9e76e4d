//! Bounds on what a peer or an operator can make us hold or compute.
//!
//! Text a peer sends us (an agent's report message, a goodbye or refusal
//! reason) is shown in the console and kept in the event log, so it is
//! capped; and a wait a peer or an operator chose is added to the clock
//! without the panic of `Instant + Duration` on overflow.

use std::time::{Duration, Instant};

/// The longest message or reason kept from a peer, in bytes: a line in the
/// event log, not a megabyte.
pub const MAX_MESSAGE_LEN: usize = 256;

/// Marks a message that was cut.
const ELLIPSIS: &str = "…";

/// How far ahead [`instant_after`] looks at most: "never" for any
/// practical purpose, yet small enough to add to any clock reading.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Fallback when even [`FAR_FUTURE`] does not fit the platform's clock.
const ONE_DAY: Duration = Duration::from_secs(86_400);

/// `text`, cut to at most [`MAX_MESSAGE_LEN`] bytes at a character
/// boundary, ending in "…" when it was cut.
pub fn cap_message(text: &str) -> String {
    let mut owned = text.get(..cut_point(text)).unwrap_or_default().to_string();
    if owned.len() < text.len() {
        owned.push_str(ELLIPSIS);
    }
    owned
}

/// [`cap_message`] without a copy when `text` already fits.
pub fn cap_in_place(text: &mut String) {
    let cut = cut_point(text);
    if cut < text.len() {
        text.truncate(cut);
        text.push_str(ELLIPSIS);
    }
}

/// Where to cut `text` so that, with the ellipsis when cut, it fits.
fn cut_point(text: &str) -> usize {
    if text.len() <= MAX_MESSAGE_LEN {
        return text.len();
    }
    let mut cut = MAX_MESSAGE_LEN - ELLIPSIS.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// `now + wait`, never panicking: a wait too long for the clock (or longer
/// than a hundred years) becomes a hundred years, or a day where even that
/// does not fit. Use it wherever the wait comes from a task spec, a flag or
/// a peer.
pub fn instant_after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(FAR_FUTURE)).or_else(|| now.checked_add(ONE_DAY)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_messages_are_kept_whole() {
        assert_eq!(cap_message(""), "");
        let exact = "x".repeat(MAX_MESSAGE_LEN);
        assert_eq!(cap_message(&exact), exact);
        let mut in_place = exact.clone();
        cap_in_place(&mut in_place);
        assert_eq!(in_place, exact);
    }

    #[test]
    fn long_messages_are_cut_and_marked() {
        let long = "x".repeat(MAX_MESSAGE_LEN + 1);
        let capped = cap_message(&long);
        assert_eq!(capped.len(), MAX_MESSAGE_LEN);
        assert!(capped.ends_with('…'));
        assert_eq!(capped.trim_end_matches('…'), "x".repeat(MAX_MESSAGE_LEN - 3));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Characters of 2, 3 and 4 bytes, shifted so the cut falls inside
        // one at every offset.
        for filler in ["é", "€", "🦀"] {
            for shift in 0..4 {
                let text = format!("{}{}", "a".repeat(shift), filler.repeat(MAX_MESSAGE_LEN));
                let capped = cap_message(&text);
                assert!(capped.len() <= MAX_MESSAGE_LEN, "{filler} {shift}: {}", capped.len());
                assert!(capped.len() > MAX_MESSAGE_LEN - 3 - filler.len(), "cut too early");
                assert!(capped.ends_with('…'));
                assert!(text.starts_with(capped.trim_end_matches('…')));
                let mut in_place = text.clone();
                cap_in_place(&mut in_place);
                assert_eq!(in_place, capped);
            }
        }
    }

    #[test]
    fn regression_overflow_when_adding_duration_to_instant() {
        let now = Instant::now();
        assert_eq!(instant_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        let far = instant_after(now, Duration::from_secs(10_000_000_000_000_000_000));
        assert!(far > now + Duration::from_secs(365 * 86_400), "far in the future");
        assert_eq!(instant_after(now, Duration::MAX), far);
        // And it can be waited on: tokio and std add to it again.
        assert!(far.checked_add(Duration::from_secs(3600)).is_some());
    }

    proptest! {
        #[test]
        fn any_text_is_capped_to_a_prefix(text in "\\PC{0,400}") {
            let capped = cap_message(&text);
            prop_assert!(capped.len() <= MAX_MESSAGE_LEN);
            if text.len() <= MAX_MESSAGE_LEN {
                prop_assert_eq!(&capped, &text);
            } else {
                prop_assert!(text.starts_with(capped.strip_suffix('…').unwrap_or("missing ellipsis\0")));
            }
            let mut in_place = text.clone();
            cap_in_place(&mut in_place);
            prop_assert_eq!(in_place, capped);
        }

        #[test]
        fn instant_after_never_panics_and_never_goes_back(secs in any::<u64>(), nanos in 0..1_000_000_000u32) {
            let now = Instant::now();
            prop_assert!(instant_after(now, Duration::new(secs, nanos)) >= now);
        }
    }
}
