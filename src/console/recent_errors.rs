//! The last warnings and errors this process logged, kept in memory for the
//! console's overview: an operator sees what went wrong lately without
//! reaching for the logs. A `tracing` layer beside the log writer, so it
//! sees exactly what the log filter lets through.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Entries kept; older ones drop out.
const KEPT: usize = 50;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 500;

static RECENT: LazyLock<Mutex<VecDeque<LoggedError>>> =
    LazyLock::new(|| Mutex::new(VecDeque::with_capacity(KEPT)));

/// One warning or error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoggedError {
    pub at: DateTime<Utc>,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields, as the text log shows them.
    pub message: String,
}

/// The layer that keeps them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecentErrors;

impl<S: Subscriber> Layer<S> for RecentErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = MessageText::default();
        event.record(&mut text);
        let mut message = text.message;
        if !text.fields.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&text.fields);
        }
        if message.chars().count() > MAX_MESSAGE {
            message = message.chars().take(MAX_MESSAGE).collect::<String>() + "…";
        }
        let entry = LoggedError {
            at: Utc::now(),
            level: level.to_string(),
            target: event.metadata().target().to_owned(),
            message,
        };
        let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(entry);
    }
}

/// The kept entries, newest first.
pub fn recent() -> Vec<LoggedError> {
    let recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    recent.iter().rev().cloned().collect()
}

#[derive(Default)]
struct MessageText {
    message: String,
    fields: String,
}

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn warnings_and_errors_are_kept_newest_first_and_info_is_not() {
        let subscriber = tracing_subscriber::registry().with(RecentErrors);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(store = "postgres", "Recent-errors test: the first.");
            tracing::error!("Recent-errors test: the second.");
        });
        let kept: Vec<LoggedError> = recent()
            .into_iter()
            .filter(|e| e.message.contains("Recent-errors test"))
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0].level, "ERROR");
        assert_eq!(kept[1].level, "WARN");
        assert_eq!(
            kept[1].message,
            "Recent-errors test: the first. store=postgres"
        );
        assert!(recent().iter().all(|e| e.message != "not kept"));
    }
}
