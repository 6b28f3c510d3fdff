//! The `drafts` domain: autosaved JSON documents edited by many clients
//! with JSON Patch (RFC 6902). Read top to bottom: [`commands`], [`events`]
//! (the payloads live in herald-events), [`state`] (`apply`), [`decide`].
//!
//! A draft is a title and a JSON object, the document. Its **draft
//! version** counts the document's changes: 1 when it is created, one more
//! for each recorded patch. Renaming, publishing, deleting and restoring do
//! not change it (they are events of the stream, so the stream's version and
//! the draft version differ).
//!
//! Rules:
//!
//! - **Creating.** A draft is created once, with a non-blank title and an
//!   object (`create` again is refused, 409). Every other command on a draft
//!   that was never created is refused as not found (404).
//! - **Patching: the stale-version rule.** A client sends the patch it made
//!   and `base_version`, the draft version it was looking at.
//!   - `base_version` equal to the current version: the patch applies as is.
//!   - `base_version` older than the current version (another client
//!     patched in between): the patch is still accepted when it applies
//!     cleanly to the *current* document **and** its `test` operations, if
//!     any, pass on it. RFC 6902's own semantics decide, not the version
//!     numbers: a client that wants strict optimistic concurrency puts
//!     `test` operations for what it relies on in its patch, and a stale
//!     patch whose tests no longer hold is refused.
//!   - A patch that does not apply to the current document (a path or
//!     `from` that does not exist, an array index out of bounds, a failing
//!     `test`, a move into its own child) is refused as forbidden (409),
//!     naming the failing operation; nothing is recorded.
//!   - `base_version` greater than the current version (a version that
//!     does not exist yet), or 0, is refused as invalid (422).
//!
//!   The decision applies the patch to a copy of the document; an accepted
//!   patch is recorded (`draft_patched`) as sent, with `base_version` and
//!   the `version` it makes, and `apply` re-applies it to the document.
//!   Since it applied when it was decided, and the events are the only
//!   writers, it applies again on every replay; should a stored patch ever
//!   fail, `apply` logs it and leaves the state as it was (an event is a
//!   fact: `apply` never fails nor panics).
//! - **The document stays an object**: a patch that would make it anything
//!   else (`add` or `replace` at the root `""` with a non-object) is refused
//!   as invalid (422).
//! - **A patch that changes nothing records nothing** (an empty patch, a
//!   patch of only `test` operations, a replace by the same value): the
//!   answer is success with no events, and the version stays, so autosaving
//!   clients may repeat themselves freely.
//! - **Publishing** freezes the current version: its document stays
//!   retrievable as published ([`Draft::published`]) while editing goes on.
//!   Publishing a version already published records nothing.
//! - **Renaming** to a non-blank title; renaming to the current title
//!   records nothing.
//! - **Deleting.** A deleted draft refuses every command but `restore`
//!   (409), including `delete`; restoring brings it back as it was (document,
//!   version, published versions), and restoring a draft that is not deleted
//!   is refused (409).

pub mod commands;
pub mod decide;
pub mod events;
pub mod state;

pub use commands::DraftCommand;
pub use events::DraftEvent;
pub use state::Draft;

/// The domain's registration: its aggregate and its events.
pub fn spec() -> crate::domain::AggregateDomain<Draft> {
    crate::domain::AggregateDomain::new(herald_events::drafts::EVENT_TYPES)
}
