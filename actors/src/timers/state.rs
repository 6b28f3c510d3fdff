//! A timer or a countdown as its events left it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{CountdownCreated, CountdownStyle, TimerEvent, TimerScheduled};

/// What a `timers/{id}` stream holds: decided by its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Scheduled with `schedule`: delivers a command or an event.
    Timer,
    /// Created with `create_countdown`: counts views until its deadline.
    Countdown,
}

/// Where a timer or countdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerStatus {
    /// It has an occurrence to come (`next_due_at`).
    Active,
    /// A one-shot timer that fired: finished.
    Fired,
    /// A timer that was cancelled: finished.
    Cancelled,
    /// A countdown past its deadline: finished.
    Expired,
}

/// The timer aggregate's state. `status` is `None` until the stream's
/// first event; exactly one of `schedule` and `countdown` is then set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub status: Option<TimerStatus>,
    /// For a timer: what it was scheduled with (`due_at` is the first).
    pub schedule: Option<TimerScheduled>,
    /// For a countdown: its deadline and label.
    pub countdown: Option<CountdownCreated>,
    /// Occurrences fired so far (a countdown's expiry is occurrence 1).
    pub fired: u64,
    /// When the next occurrence (`fired + 1`) is due, while active.
    pub next_due_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Occurrences that fired late.
    pub late_firings: u64,
    /// A countdown's views so far.
    pub views: u64,
    /// A countdown's image style as last set (`countdown.style` until it
    /// is restyled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<CountdownStyle>,
    /// How many times the style was changed since creation: names a
    /// rendering of the image.
    #[serde(default)]
    pub style_revision: u64,
    /// SHA-256 (hex) of the current image URL's secret, if one is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_key_sha256: Option<String>,
}

impl Timer {
    /// A timer or a countdown; `None` before the first event.
    pub fn kind(&self) -> Option<TimerKind> {
        if self.schedule.is_some() {
            Some(TimerKind::Timer)
        } else if self.countdown.is_some() {
            Some(TimerKind::Countdown)
        } else {
            None
        }
    }

    /// The occurrence to fire next and when it is due, while active.
    pub fn pending(&self) -> Option<(u64, DateTime<Utc>)> {
        match (self.status, self.next_due_at) {
            (Some(TimerStatus::Active), Some(due)) => Some((self.fired + 1, due)),
            _ => None,
        }
    }

    /// A countdown's image style now.
    pub fn current_style(&self) -> Option<&CountdownStyle> {
        self.style
            .as_ref()
            .or(self.countdown.as_ref().map(|c| &c.style))
    }

    pub fn apply_event(&mut self, event: &TimerEvent) {
        match event {
            TimerEvent::Scheduled(e) => {
                self.status = Some(TimerStatus::Active);
                self.next_due_at = Some(e.due_at);
                self.schedule = Some(e.clone());
            }
            TimerEvent::Fired(e) => {
                self.fired = e.occurrence;
                self.last_fired_at = Some(e.fired_at);
                self.next_due_at = e.next_due_at;
                if e.late {
                    self.late_firings += 1;
                }
                if e.next_due_at.is_none() {
                    self.status = Some(TimerStatus::Fired);
                }
            }
            TimerEvent::Cancelled(_) => {
                self.status = Some(TimerStatus::Cancelled);
                self.next_due_at = None;
            }
            TimerEvent::CountdownCreated(e) => {
                self.status = Some(TimerStatus::Active);
                self.next_due_at = Some(e.deadline);
                self.countdown = Some(e.clone());
                self.style = Some(e.style.clone());
            }
            TimerEvent::CountdownRestyled(e) => {
                self.style = Some(e.style.clone());
                self.style_revision += 1;
            }
            TimerEvent::ImageUrlIssued(e) => self.image_key_sha256 = Some(e.key_sha256.clone()),
            TimerEvent::ImageUrlRevoked(_) => self.image_key_sha256 = None,
            TimerEvent::CountdownViewed(e) => self.views = e.views,
            TimerEvent::CountdownExpired(e) => {
                self.status = Some(TimerStatus::Expired);
                self.views = e.views;
                self.fired = 1;
                self.next_due_at = None;
            }
        }
    }
}
