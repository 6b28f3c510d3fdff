//! Which events a trigger takes: event types and a stream, each a pattern
//! where `*` matches any run of characters (none included). Built-in and
//! runtime types alike: the pattern is matched against the stored type's
//! name, so a type registered after the automation matches too.

/// Why a filter is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("name at least one event type (`*` for every type)")]
    NoTypes,
    #[error(
        "{0:?} is not an event type pattern: `domain.name`, lower-case letters, digits, _ and `*`"
    )]
    BadType(String),
    #[error("{0:?} is not a stream pattern: `domain/id`, with `*` wildcards")]
    BadStream(String),
    #[error("at most {MAX_TYPES} type patterns")]
    TooMany,
}

/// The most type patterns of one filter.
pub const MAX_TYPES: usize = 64;

/// A compiled event filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMatcher {
    types: Vec<Pattern>,
    stream: Option<Pattern>,
}

impl EventMatcher {
    pub fn new(types: &[String], stream: Option<&str>) -> Result<Self, MatcherError> {
        if types.is_empty() {
            return Err(MatcherError::NoTypes);
        }
        if types.len() > MAX_TYPES {
            return Err(MatcherError::TooMany);
        }
        let types = types
            .iter()
            .map(|t| {
                let ok = !t.is_empty()
                    && t.len() <= 129
                    && t.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '*')
                    })
                    && (t.contains('.') || t.chars().all(|c| c == '*'));
                ok.then(|| Pattern::new(t))
                    .ok_or_else(|| MatcherError::BadType(t.clone()))
            })
            .collect::<Result<_, _>>()?;
        let stream = stream
            .map(|s| {
                let ok = !s.is_empty()
                    && s.len() <= 300
                    && (s.contains('/') || s.chars().all(|c| c == '*'))
                    && !s.chars().any(char::is_control);
                ok.then(|| Pattern::new(s))
                    .ok_or_else(|| MatcherError::BadStream(s.to_owned()))
            })
            .transpose()?;
        Ok(Self { types, stream })
    }

    /// Whether an event of `event_type` (`domain.name`) on `stream`
    /// (`domain/id`) matches.
    pub fn matches(&self, event_type: &str, stream: &str) -> bool {
        self.types.iter().any(|p| p.matches(event_type))
            && self.stream.as_ref().is_none_or(|p| p.matches(stream))
    }

    /// The type patterns as written (the store's search takes the same
    /// `*` patterns).
    pub fn type_patterns(&self) -> Vec<String> {
        self.types.iter().map(|p| p.text.clone()).collect()
    }

    /// The stream named, when the pattern has no wildcard (the store's
    /// stream index can then find candidates).
    pub fn exact_stream(&self) -> Option<&str> {
        self.stream.as_ref().and_then(Pattern::exact)
    }

    /// The exact types named, when no type pattern has a wildcard (the
    /// store's type index can then find candidates).
    pub fn exact_types(&self) -> Option<Vec<&str>> {
        self.types.iter().map(Pattern::exact).collect()
    }
}

/// A `*` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    parts: Vec<String>,
}

impl Pattern {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            parts: text.split('*').map(str::to_owned).collect(),
        }
    }

    fn exact(&self) -> Option<&str> {
        (self.parts.len() == 1).then_some(self.text.as_str())
    }

    fn matches(&self, text: &str) -> bool {
        let [first, middle @ .., last] = self.parts.as_slice() else {
            return self.text == text;
        };
        let Some(mut rest) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        for part in middle {
            match rest.find(part.as_str()) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(types: &[&str], stream: Option<&str>) -> EventMatcher {
        EventMatcher::new(
            &types.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            stream,
        )
        .unwrap()
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(m(&["edges.*"], None).matches("edges.edge_went_offline", "edges/E-1"));
        assert!(!m(&["edges.*"], None).matches("tickets.ticket_opened", "tickets/T"));
        assert!(m(&["*"], None).matches("orders.placed", "orders/1"));
        assert!(m(&["*.ticket_*"], None).matches("tickets.ticket_opened", "tickets/T"));
        assert!(m(&["edges.edge_went_offline"], Some("edges/site-*"))
            .matches("edges.edge_went_offline", "edges/site-9"));
        assert!(!m(&["edges.edge_went_offline"], Some("edges/site-*"))
            .matches("edges.edge_went_offline", "edges/x"));
        assert!(!m(&["a.b*b"], None).matches("a.b", "a/1"));
        assert_eq!(
            m(&["a.b", "c.d"], None).exact_types(),
            Some(vec!["a.b", "c.d"])
        );
        assert_eq!(m(&["a.*"], None).exact_types(), None);
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert_eq!(EventMatcher::new(&[], None), Err(MatcherError::NoTypes));
        assert!(matches!(
            EventMatcher::new(&["Edges.X".into()], None),
            Err(MatcherError::BadType(_))
        ));
        assert!(matches!(
            EventMatcher::new(&["edges".into()], None),
            Err(MatcherError::BadType(_))
        ));
        assert!(matches!(
            EventMatcher::new(&["*".into()], Some("nostream")),
            Err(MatcherError::BadStream(_))
        ));
    }

    /// A pattern matches exactly what the regular expression it stands for
    /// matches.
    fn as_regex(pattern: &str) -> String {
        let escaped: Vec<String> = pattern.split('*').map(|p| p.replace('.', "\\.")).collect();
        format!("^{}$", escaped.join(".*"))
    }

    proptest! {
        #[test]
        fn patterns_agree_with_their_regular_expression(pattern in "[ab.*]{1,6}", text in "[ab.]{0,8}") {
            let p = Pattern::new(&pattern);
            let re = regex_lite(&as_regex(&pattern), &text);
            prop_assert_eq!(p.matches(&text), re, "pattern {} text {}", pattern, text);
        }
    }

    /// A tiny backtracking matcher for `^…$` with `.*` and literal chars
    /// (escaped dots), enough for the property above.
    fn regex_lite(re: &str, text: &str) -> bool {
        let re = re.trim_start_matches('^').trim_end_matches('$');
        let mut tokens = Vec::new();
        let mut chars = re.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => tokens.push(Some(chars.next().unwrap())),
                '.' if chars.peek() == Some(&'*') => {
                    chars.next();
                    tokens.push(None);
                }
                c => tokens.push(Some(c)),
            }
        }
        fn go(tokens: &[Option<char>], text: &[char]) -> bool {
            match tokens.split_first() {
                None => text.is_empty(),
                Some((None, rest)) => (0..=text.len()).any(|i| go(rest, &text[i..])),
                Some((Some(c), rest)) => text.first() == Some(c) && go(rest, &text[1..]),
            }
        }
        go(&tokens, &text.chars().collect::<Vec<_>>())
    }
}
