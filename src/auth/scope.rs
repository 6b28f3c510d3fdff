//! Scopes: what an identity may do, per action and event-type pattern.
//! Written `action:pattern` — `publish:edges.*`, `subscribe:tickets`,
//! `read:*`, `admin`. A pattern is an event type with `*` wildcards, or a
//! bare domain meaning every type of it.

use std::fmt;
use std::str::FromStr;

use herald_events::EventType;

/// What a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Append events (HTTP publish, stream appends, broker ingest).
    Publish,
    /// Follow events live (websocket, server-sent events).
    Subscribe,
    /// Read streams, the log and search.
    Read,
    /// Register, deprecate and re-rule runtime event types (`schemas:write`,
    /// or `schemas:write:<pattern>` for some types only).
    RegisterSchemas,
    /// Create, change, switch and delete automations (`automations:write`).
    /// An automation acts in the whole tenant (its actions send commands
    /// and append events of any type), so this is as wide as the tenant's
    /// publish rights.
    ManageAutomations,
    /// List and show automations, try them on history
    /// (`automations:read`; `automations:write` includes it).
    ReadAutomations,
    /// See personal fields in plaintext wherever events and views are read
    /// (`personal:read`); without it they read as `[personal]`. Also
    /// needed for a subject's access request.
    ReadPersonal,
    /// Forget a subject: destroy its keys (`personal:forget`).
    ForgetSubjects,
    /// Decrypt sealed values copied out of Herald, e.g. from broker
    /// messages, through `POST /v1/personal/reveal` (`personal:decrypt`).
    DecryptPersonal,
    /// Everything, and the admin endpoints.
    Admin,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Read => "read",
            Action::RegisterSchemas => "schemas:write",
            Action::ManageAutomations => "automations:write",
            Action::ReadAutomations => "automations:read",
            Action::ReadPersonal => "personal:read",
            Action::ForgetSubjects => "personal:forget",
            Action::DecryptPersonal => "personal:decrypt",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An event-type pattern with `*` matching any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypePattern(String);

impl TypePattern {
    pub const ANY: &'static str = "*";

    pub fn new(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("an empty pattern".into());
        }
        let ok = pattern
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '*'));
        if !ok {
            return Err(format!(
                "pattern {pattern:?} may only hold a-z, 0-9, '_', '.' and '*'"
            ));
        }
        // A bare domain means every type of the domain.
        if !pattern.contains('.') && !pattern.contains('*') {
            return Ok(Self(format!("{pattern}.*")));
        }
        Ok(Self(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        glob(self.0.as_bytes(), text.as_bytes())
    }

    pub fn matches_type(&self, event_type: &EventType) -> bool {
        self.matches(event_type.as_str())
    }

    /// True when the pattern matches every type of `domain`.
    pub fn covers_domain(&self, domain: &str) -> bool {
        self.0 == "*" || self.0 == format!("{domain}.*")
    }

    /// True when every type this pattern can match, `other` matches too.
    ///
    /// Decided on the patterns themselves: `other` must match this pattern's
    /// text with each of this pattern's `*` taken up by a `*` of `other`. That
    /// never says yes wrongly (each way to fill this pattern's stars is then
    /// matched by `other`), and says no only for contrived pairs that an
    /// alphabet this small lets cover each other, which errs on refusing.
    pub fn within(&self, other: &TypePattern) -> bool {
        covers(other.0.as_bytes(), self.0.as_bytes())
    }

    /// The part of this pattern's types that lie in `domain`, as patterns
    /// `domain.<name pattern>` (none when it matches no type of `domain`).
    /// An event name is not empty and holds no `.`, so ways of matching that
    /// need an empty name or a `.` in it are left out.
    pub fn in_domain(&self, domain: &str) -> Vec<TypePattern> {
        let prefix = format!("{domain}.");
        let mut rests = Vec::new();
        residuals(self.0.as_bytes(), prefix.as_bytes(), &mut rests);
        let mut out: Vec<TypePattern> = rests
            .into_iter()
            // An event name is not empty and holds no `.`.
            .filter(|rest| !rest.is_empty() && !rest.contains(&b'.'))
            .map(|rest| TypePattern(format!("{prefix}{}", String::from_utf8_lossy(rest))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup();
        out
    }
}

/// True when `wide` matches the text of `narrow` with every `*` of `narrow`
/// taken up by a `*` of `wide` (see [`TypePattern::within`]).
fn covers(wide: &[u8], narrow: &[u8]) -> bool {
    // at[i][j]: wide[i..] covers narrow[j..]; filled from the ends.
    let (n, m) = (wide.len(), narrow.len());
    let mut at = vec![vec![false; m + 1]; n + 1];
    at[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            at[i][j] = if wide[i] == b'*' {
                // The star takes nothing more, or one more byte (a star too).
                at[i + 1][j] || (j < m && at[i][j + 1])
            } else {
                j < m && narrow[j] != b'*' && narrow[j] == wide[i] && at[i + 1][j + 1]
            };
        }
    }
    at[0][0]
}

/// The suffixes of `pattern` left to match once `text` has been matched:
/// what the pattern asks of whatever follows `text`. Followed as a set of
/// positions in the pattern, one step per byte of `text`, so that many
/// stars cost time in proportion, never in combinations.
fn residuals<'p>(pattern: &'p [u8], text: &[u8], out: &mut Vec<&'p [u8]>) {
    // A star may also match nothing: a position on a star stands for the
    // positions after it too.
    let close = |set: &mut Vec<bool>| {
        for i in 0..pattern.len() {
            if set[i] && pattern[i] == b'*' {
                set[i + 1] = true;
            }
        }
    };
    let mut at = vec![false; pattern.len() + 1];
    at[0] = true;
    close(&mut at);
    for &t in text {
        let mut next = vec![false; pattern.len() + 1];
        for i in 0..pattern.len() {
            if at[i] {
                match pattern[i] {
                    // The star takes `t` and stays.
                    b'*' => next[i] = true,
                    c if c == t => next[i + 1] = true,
                    _ => {}
                }
            }
        }
        close(&mut next);
        at = next;
    }
    // A position just after a reached star asks for less than the star's
    // own: the star's stands for both.
    out.extend(
        (0..=pattern.len())
            .filter(|&i| at[i] && !(i > 0 && at[i - 1] && pattern[i - 1] == b'*'))
            .map(|i| &pattern[i..]),
    );
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub action: Action,
    pub pattern: TypePattern,
}

impl Scope {
    pub fn allows(&self, action: Action, event_type: &EventType) -> bool {
        (self.action == action || self.action == Action::Admin)
            && self.pattern.matches_type(event_type)
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("schemas:write") {
            let pattern = match rest.strip_prefix(':') {
                Some(pattern) => pattern,
                None if rest.is_empty() => TypePattern::ANY,
                None => return Err(format!("unknown scope {s:?}; did you mean schemas:write?")),
            };
            return Ok(Self {
                action: Action::RegisterSchemas,
                pattern: TypePattern::new(pattern).map_err(|e| format!("scope {s:?}: {e}"))?,
            });
        }
        match s {
            "automations:write" | "automations:read" => {
                return Ok(Self {
                    action: if s == "automations:write" {
                        Action::ManageAutomations
                    } else {
                        Action::ReadAutomations
                    },
                    pattern: TypePattern::new(TypePattern::ANY).expect("the any pattern"),
                })
            }
            "personal:read" | "personal:forget" | "personal:decrypt" => {
                return Ok(Self {
                    action: match s {
                        "personal:read" => Action::ReadPersonal,
                        "personal:forget" => Action::ForgetSubjects,
                        _ => Action::DecryptPersonal,
                    },
                    pattern: TypePattern::new(TypePattern::ANY).expect("the any pattern"),
                })
            }
            _ if s.starts_with("personal:") => {
                return Err(format!(
                    "unknown scope {s:?}; the personal data scopes are personal:read, \
                     personal:forget and personal:decrypt (no pattern: a subject's data spans types)"
                ))
            }
            _ if s.starts_with("automations:") => {
                return Err(format!(
                    "unknown scope {s:?}; the automations scopes are automations:read and \
                     automations:write (no pattern: an automation acts in the whole tenant)"
                ))
            }
            _ => {}
        }
        let (action, pattern) = s.split_once(':').unwrap_or((s, TypePattern::ANY));
        let action = match action {
            "publish" => Action::Publish,
            "subscribe" => Action::Subscribe,
            "read" => Action::Read,
            "admin" => Action::Admin,
            other => {
                return Err(format!(
                    "unknown action {other:?} in scope {s:?}; use publish, subscribe, read, \
                     schemas:write, automations:read, automations:write, personal:read, \
                     personal:forget, personal:decrypt or admin"
                ))
            }
        };
        Ok(Self {
            action,
            pattern: TypePattern::new(pattern).map_err(|e| format!("scope {s:?}: {e}"))?,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.action == Action::RegisterSchemas && self.pattern.as_str() == TypePattern::ANY {
            return f.write_str("schemas:write");
        }
        if matches!(
            self.action,
            Action::ManageAutomations
                | Action::ReadAutomations
                | Action::ReadPersonal
                | Action::ForgetSubjects
                | Action::DecryptPersonal
        ) {
            return f.write_str(self.action.name());
        }
        write!(f, "{}:{}", self.action, self.pattern)
    }
}

/// Parses `a,b,c` (or whitespace-separated) scopes.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> EventType {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_types_by_glob_and_bare_domains() {
        let p = TypePattern::new("edges.*").unwrap();
        assert!(p.matches_type(&t("edges.edge_went_offline")));
        assert!(!p.matches_type(&t("tickets.ticket_opened")));
        assert!(TypePattern::new("tickets")
            .unwrap()
            .matches_type(&t("tickets.ticket_opened")));
        assert!(TypePattern::new("*").unwrap().matches_type(&t("a.b")));
        let opened = TypePattern::new("*.ticket_*").unwrap();
        assert!(opened.matches_type(&t("tickets.ticket_opened")));
        assert!(!opened.matches_type(&t("tickets.note_appended")));
        assert!(TypePattern::new("Tickets").is_err());
    }

    #[test]
    fn domains_are_covered() {
        assert!(TypePattern::new("tickets")
            .unwrap()
            .covers_domain("tickets"));
        assert!(!TypePattern::new("tickets.ticket_opened")
            .unwrap()
            .covers_domain("tickets"));
    }

    #[test]
    fn a_pattern_is_within_another_only_when_all_it_matches_is() {
        let p = |s: &str| TypePattern::new(s).unwrap();
        assert!(p("tickets.*").within(&p("tickets.*")));
        assert!(p("tickets.ticket_*").within(&p("tickets.*")));
        assert!(p("tickets.ticket_opened").within(&p("tickets.ticket_*")));
        assert!(p("tickets.*").within(&p("*")));
        assert!(p("*.ticket_opened").within(&p("*.ticket_*")));
        assert!(p("*.ticket_opened").within(&p("*")));
        assert!(!p("tickets.*").within(&p("edges.*")));
        assert!(!p("tickets.*").within(&p("tickets.ticket_*")));
        assert!(!p("*").within(&p("tickets.*")));
        assert!(!p("*.ticket_opened").within(&p("tickets.*")));
        assert!(!p("tick*").within(&p("tickets.*")));
        assert!(!p("tickets.ticket_*").within(&p("tickets.ticket_opened")));
    }

    #[test]
    fn a_pattern_narrowed_to_a_domain() {
        let p = |s: &str| TypePattern::new(s).unwrap();
        let names = |pattern: &str, domain: &str| -> Vec<String> {
            p(pattern)
                .in_domain(domain)
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect()
        };
        assert_eq!(names("*", "tickets"), ["tickets.*"]);
        assert_eq!(names("tickets.*", "tickets"), ["tickets.*"]);
        assert_eq!(names("*.ticket_*", "tickets"), ["tickets.ticket_*"]);
        assert_eq!(names("tick*", "tickets"), ["tickets.*"]);
        assert_eq!(names("t*s.note_*", "tickets"), ["tickets.note_*"]);
        assert!(names("edges.*", "tickets").is_empty());
        assert!(names("tickets.", "tickets").is_empty());
        // Many stars cost steps, not combinations.
        let stars = "*".repeat(200);
        assert_eq!(names(&stars, "tickets"), [format!("tickets.{stars}")]);
        assert!(names("tickets.*", "tick").is_empty());
        assert!(p("*.ticket_*")
            .in_domain("tickets")
            .iter()
            .all(|t| t.within(&p("tickets.ticket_*"))));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Patterns and types over a small alphabet, so that they meet often.
        fn pattern() -> impl Strategy<Value = TypePattern> {
            "[ab*]{0,3}\\.?[ab*]{0,3}"
                .prop_filter_map("a valid pattern", |s| TypePattern::new(&s).ok())
        }

        fn event_type() -> impl Strategy<Value = String> {
            ("[ab]{1,3}", "[ab]{1,3}").prop_map(|(d, n)| format!("{d}.{n}"))
        }

        proptest! {
            #[test]
            fn within_never_lets_a_type_through_that_the_wider_pattern_refuses(
                narrow in pattern(),
                wide in pattern(),
                types in prop::collection::vec(event_type(), 1..20),
            ) {
                if narrow.within(&wide) {
                    for t in types.iter().filter(|t| narrow.matches(t)) {
                        prop_assert!(wide.matches(t), "{narrow} within {wide}, yet {t}");
                    }
                }
            }

            #[test]
            fn in_domain_keeps_exactly_the_types_of_the_domain(
                p in pattern(),
                domain in "[ab]{1,3}",
                types in prop::collection::vec(event_type(), 1..20),
            ) {
                let parts = p.in_domain(&domain);
                for t in &types {
                    let inside = t.split_once('.').is_some_and(|(d, _)| d == domain);
                    let expected = inside && p.matches(t);
                    prop_assert_eq!(
                        parts.iter().any(|part| part.matches(t)),
                        expected,
                        "{} in {}: {} ({:?})", p, domain, t, parts
                    );
                }
            }
        }
    }

    #[test]
    fn scopes_parse_and_admin_allows_everything() {
        let scopes = parse_scopes("publish:edges.*,subscribe:tickets read:*").unwrap();
        assert_eq!(scopes.len(), 3);
        assert!(scopes[0].allows(Action::Publish, &t("edges.x")));
        assert!(!scopes[0].allows(Action::Read, &t("edges.x")));
        let admin: Scope = "admin".parse().unwrap();
        assert!(admin.allows(Action::Publish, &t("any.thing")));
        assert!("write:*".parse::<Scope>().is_err());
    }
}
