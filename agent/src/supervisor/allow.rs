//! `--allow-exec`: which programs the console may make this agent run.
//!
//! Patterns are globs matched against `command[0]` as the task file writes
//! it (not the resolved path). `*` and `?` do not cross `/`, so
//! `/opt/app/bin/*` allows the programs in that directory and nothing below
//! it. An empty list allows everything.

use glob::{MatchOptions, Pattern};

use super::error::SupervisorError;

/// `*` stops at `/`; dots are ordinary characters.
const OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// The compiled allowlist.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList {
    /// Empty: everything is allowed.
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    Glob(Pattern),
    /// A pattern that is not a valid glob still restricts: it allows only
    /// the identical program name ([`check`] reports it at start-up).
    Literal(String),
}

impl AllowList {
    /// Compiles `patterns`; an invalid one matches only itself, literally.
    pub(crate) fn new(patterns: &[String]) -> Self {
        let rules = patterns
            .iter()
            .map(|pattern| Pattern::new(pattern).map_or_else(|_| Rule::Literal(pattern.clone()), Rule::Glob))
            .collect();
        Self { rules }
    }

    /// Whether `program` (`command[0]`) may run.
    pub(crate) fn allows(&self, program: &str) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|rule| match rule {
                Rule::Glob(pattern) => pattern.matches_with(program, OPTIONS),
                Rule::Literal(literal) => literal == program,
            })
    }
}

/// Checks that every pattern is a valid glob.
///
/// # Errors
/// The first invalid pattern, with the reason.
pub(crate) fn check(patterns: &[String]) -> Result<(), SupervisorError> {
    for pattern in patterns {
        Pattern::new(pattern)
            .map_err(|err| SupervisorError::BadPattern { pattern: pattern.clone(), reason: err.msg.to_string() })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(&patterns.iter().map(|pattern| (*pattern).to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn an_empty_list_allows_everything() {
        assert!(list(&[]).allows("/bin/anything"));
        assert!(list(&[]).allows(""));
    }

    #[test]
    fn globs_match_the_program_and_stop_at_slashes() {
        let allow = list(&["/usr/bin/*", "python3*", "sleep"]);
        assert!(allow.allows("/usr/bin/true"));
        assert!(allow.allows("/usr/bin/.hidden"));
        assert!(!allow.allows("/usr/bin/sub/tool"));
        assert!(!allow.allows("/usr/bin/../../tmp/evil"));
        assert!(allow.allows("python3.12"));
        assert!(allow.allows("sleep"));
        assert!(!allow.allows("/usr/bin/sleep2/x"));
        assert!(!allow.allows("false"));
        assert!(!allow.allows("Sleep"));
    }

    #[test]
    fn invalid_patterns_are_reported_and_match_only_themselves() {
        let err = check(&["ok*".into(), "[bad".into()]).unwrap_err();
        assert!(err.to_string().contains("\"[bad\""), "{err}");
        let allow = list(&["[bad"]);
        assert!(allow.allows("[bad"));
        assert!(!allow.allows("b"));
        assert!(check(&["/opt/*/bin/?x".into()]).is_ok());
    }
}
