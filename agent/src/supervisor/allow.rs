//! `--allow-exec`: which programs the console may make this agent run.
//!
//! Deny by default: an agent runs a task only if its program matches one of
//! the patterns, and with no pattern it runs nothing (README.md, "Agent
//! options"). Whoever controls the console would otherwise run any command
//! on every host, as the agent's user.
//!
//! Patterns are globs matched against `command[0]` as the task file writes
//! it (not the resolved path). `*` and `?` do not cross `/`, so
//! `/opt/app/bin/*` allows the programs in that directory and nothing below
//! it. The pattern [`ALLOW_ANY`] (`*` alone) is the one exception: it allows
//! every program, paths included, for trusted set-ups.

use glob::{MatchOptions, Pattern};

use super::error::SupervisorError;

/// The pattern that allows every program, paths included. As a glob, `*`
/// would stop at `/` and allow `sleep` but not `/usr/bin/sleep`; nobody
/// writing it alone means that.
pub const ALLOW_ANY: &str = "*";

/// The longest refusal message: the console caps report messages at 256
/// bytes, and the whole of this one should reach the operator.
pub(crate) const MAX_REFUSAL_LEN: usize = 200;

/// The longest program name quoted in full in a refusal; a longer one is cut
/// (and cut further if the message is still too long).
const MAX_QUOTED_PROGRAM: usize = 64;

/// `*` stops at `/`; dots are ordinary characters.
const OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// The compiled allowlist.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList {
    /// Empty: nothing is allowed.
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    /// [`ALLOW_ANY`].
    Any,
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
            .map(|pattern| {
                if pattern == ALLOW_ANY {
                    Rule::Any
                } else {
                    Pattern::new(pattern).map_or_else(|_| Rule::Literal(pattern.clone()), Rule::Glob)
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether `program` (`command[0]`) may run.
    pub(crate) fn allows(&self, program: &str) -> bool {
        self.rules.iter().any(|rule| match rule {
            Rule::Any => true,
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

/// How the operator changes an agent's allowlist, so that a refusal can say
/// exactly what to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowSource {
    /// `ringwatch-agent --allow-exec PATTERN` (a standalone agent).
    #[default]
    Flag,
    /// A list in a config file, named as the operator should read it, like
    /// `local_agent_allow_exec in the console's config file` (an agent
    /// embedded in another program).
    Config(String),
}

/// The `Failed` message of a refused program: what is refused, where, and
/// the exact change that allows it. At most [`MAX_REFUSAL_LEN`] bytes: a
/// long program name is cut short (marked `…`).
pub(crate) fn refusal(program: &str, node: Option<&str>, source: &AllowSource) -> String {
    let node = node.map(|node| cut(node, MAX_QUOTED_PROGRAM));
    let full = program.chars().count();
    let mut keep = full.min(MAX_QUOTED_PROGRAM);
    loop {
        let shown = if keep < full { format!("{}…", cut(program, keep)) } else { program.to_string() };
        let message = refusal_text(&shown, node.as_deref(), source);
        if message.len() <= MAX_REFUSAL_LEN {
            return message;
        }
        if keep == 0 {
            return cut_bytes(&message, MAX_REFUSAL_LEN).to_string();
        }
        keep -= 1;
    }
}

fn refusal_text(program: &str, node: Option<&str>, source: &AllowSource) -> String {
    let name = printable(program, true);
    let place = node.map_or_else(|| "this node".to_string(), |node| format!("node \"{}\"", printable(node, true)));
    let pattern = Pattern::escape(program);
    match source {
        AllowSource::Flag => format!(
            "program \"{name}\" is not allowed on {place}: restart its agent with --allow-exec {} (or a glob matching it)",
            printable(&shell_word(&pattern), false)
        ),
        AllowSource::Config(list) => format!(
            "program \"{name}\" is not allowed on {place}: add \"{}\" (or a glob matching it) to {list}",
            printable(&pattern, true)
        ),
    }
}

/// The first `chars` characters of `text`.
fn cut(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// The longest prefix of `text` of at most `max` bytes, on a character
/// boundary.
fn cut_bytes(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|&end| text.is_char_boundary(end)).unwrap_or(0);
    &text[..end]
}

/// `text` with control characters escaped (and double quotes and
/// backslashes, for text inside double quotes), so a hostile program name
/// cannot break the message's lines or quotes.
fn printable(text: &str, in_quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || (in_quotes && (c == '"' || c == '\\')) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` as one shell word: as is when it holds only characters no shell
/// treats specially, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',' | '='));
    if plain { text.to_string() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(&patterns.iter().map(|pattern| (*pattern).to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        assert!(!list(&[]).allows("/bin/anything"));
        assert!(!list(&[]).allows("sh"));
        assert!(!list(&[]).allows(""));
    }

    #[test]
    fn a_lone_star_allows_every_program_paths_included() {
        let any = list(&[ALLOW_ANY]);
        for program in ["sh", "python3", "/usr/bin/env", "./run", "../../tmp/x", "/a/b/c/d", ".hidden", ""] {
            assert!(any.allows(program), "{program:?}");
        }
        // Only `*` alone: inside a longer pattern it stops at `/` as always.
        let star_in_a_pattern = list(&["*sh", "/usr/*"]);
        assert!(star_in_a_pattern.allows("bash"));
        assert!(!star_in_a_pattern.allows("/bin/bash"));
        assert!(!star_in_a_pattern.allows("/usr/local/bin/x"));
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
        assert!(check(&["/opt/*/bin/?x".into(), ALLOW_ANY.into()]).is_ok());
    }

    #[test]
    fn a_refusal_names_the_flag_that_allows_the_program() {
        assert_eq!(
            refusal("python3", Some("x"), &AllowSource::Flag),
            "program \"python3\" is not allowed on node \"x\": restart its agent with --allow-exec python3 \
             (or a glob matching it)"
        );
        assert_eq!(
            refusal("/usr/bin/env", None, &AllowSource::Flag),
            "program \"/usr/bin/env\" is not allowed on this node: restart its agent with --allow-exec /usr/bin/env \
             (or a glob matching it)"
        );
        let source = AllowSource::Config("local_agent_allow_exec in the console's config file".into());
        assert_eq!(
            refusal("sh", Some("laptop"), &source),
            "program \"sh\" is not allowed on node \"laptop\": add \"sh\" (or a glob matching it) to \
             local_agent_allow_exec in the console's config file"
        );
    }

    #[test]
    fn the_suggested_pattern_matches_exactly_the_refused_program() {
        for program in ["my tool", "a*b", "it's", "[x]", "/opt/app/bin/run?", "sh"] {
            let message = refusal(program, Some("n"), &AllowSource::Flag);
            let pattern = Pattern::escape(program);
            assert!(list(&[&pattern]).allows(program), "{pattern:?} must allow {program:?}");
            assert!(message.contains(&shell_word(&pattern)), "{message}");
        }
        assert!(refusal("my tool", None, &AllowSource::Flag).contains("--allow-exec 'my tool' "));
        assert!(refusal("it's", None, &AllowSource::Flag).contains(r"--allow-exec 'it'\''s' "));
        assert!(refusal("a*b", None, &AllowSource::Flag).contains("--allow-exec 'a[*]b' "));
    }

    #[test]
    fn a_refusal_is_short_and_on_one_line_whatever_the_program() {
        let long = format!("/opt/{}/bin/server", "very-long-directory-name/".repeat(40));
        let hostile = "evil\n\"quoted\"\u{1b}[31m\\";
        let wide = "é".repeat(300);
        for program in [long.as_str(), hostile, wide.as_str(), "sh"] {
            for node in [None, Some("x"), Some(&*"n".repeat(63))] {
                let message = refusal(program, node, &AllowSource::Flag);
                assert!(message.len() <= MAX_REFUSAL_LEN, "{} bytes: {message}", message.len());
                assert!(!message.chars().any(char::is_control), "{message:?}");
                assert!(message.contains("--allow-exec"), "{message}");
                assert!(message.starts_with("program \""), "{message}");
            }
        }
        let cut_short = refusal(&long, Some("x"), &AllowSource::Flag);
        assert!(cut_short.contains("/opt/very-long-directory-name/"), "{cut_short}");
        assert!(cut_short.contains('…'), "a cut name is marked: {cut_short}");
        assert!(refusal(hostile, None, &AllowSource::Flag).starts_with(r#"program "evil\n\"quoted\"\u{1b}[31m\\" is"#));
    }
}
