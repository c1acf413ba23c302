//! The body a notification is POSTed with: swarmkeeper's JSON, or a
//! Slack/Mattermost-compatible `{"text": ...}`.
//!
//! # The JSON message (`--notify-format json`, the default)
//! ```json
//! {
//!   "version": 1,
//!   "prefix": "/swarmkeeper",
//!   "event": "failing",
//!   "subject": "Stack/web",
//!   "message": "dockerd refused the service: ...",
//!   "folded": 0,
//!   "time": "2026-12-01T11:00:00Z"
//! }
//! ```
//! `event` is one of [`super::What`] (kebab-case); `folded` counts the
//! transitions of the same subject within the last minute that were not sent
//! on their own. `message` is the status or sync message, which never holds a
//! secret value.

use serde_json::{Value, json};

use super::What;
use super::fold::Message;

/// How a notification's body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// The JSON message above.
    #[default]
    Json,
    /// `{"text": ...}`, which Slack and Mattermost incoming webhooks take.
    Slack,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            other => Err(format!("{other:?}: expected json or slack")),
        }
    }
}

/// What the event says in a sentence.
fn verb(what: What) -> &'static str {
    match what {
        What::Failing => "is failing",
        What::Recovered => "recovered",
        What::Drifting => "drifts from its desired state",
        What::DriftResolved => "no longer drifts",
        What::SyncFailing => "cannot sync",
        What::SyncRecovered => "syncs again",
        What::BackupFailing => "backup failed",
        What::BackupStale => "backup is stale",
        What::BackupRecovered => "backup succeeded again",
    }
}

/// Slack's mrkdwn takes `&`, `<` and `>` as markup: escaped as it asks.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body of `message` in `format`; `prefix` says which installation speaks.
pub fn render(format: Format, prefix: &str, message: &Message) -> Value {
    let t = &message.transition;
    match format {
        Format::Json => json!({
            "version": 1,
            "prefix": prefix,
            "event": t.what,
            "subject": t.subject,
            "message": t.message,
            "folded": message.folded,
            "time": message.time.to_string(),
        }),
        Format::Slack => {
            let mut text = format!("[swarmkeeper {prefix}] {} {}", t.subject, verb(t.what));
            if !t.message.is_empty() {
                text.push_str(": ");
                text.push_str(&t.message);
            }
            if message.folded > 0 {
                text.push_str(&format!(
                    " ({} earlier changes in the last minute folded into this message)",
                    message.folded
                ));
            }
            json!({ "text": escape_slack(&text) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Transition;
    use super::*;

    fn message(folded: u32) -> Message {
        Message {
            transition: Transition::new("Stack/web", What::Failing, "a <b> & c"),
            folded,
            time: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_json_message_has_the_documented_fields() {
        let body = render(Format::Json, "/sk", &message(2));
        assert_eq!(
            body,
            json!({"version": 1, "prefix": "/sk", "event": "failing", "subject": "Stack/web",
                   "message": "a <b> & c", "folded": 2, "time": "1970-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn the_slack_text_is_escaped_and_says_what_was_folded() {
        let body = render(Format::Slack, "/sk", &message(0));
        assert_eq!(
            body["text"],
            "[swarmkeeper /sk] Stack/web is failing: a &lt;b&gt; &amp; c"
        );
        let folded = render(Format::Slack, "/sk", &message(3));
        assert!(
            folded["text"]
                .as_str()
                .unwrap()
                .contains("3 earlier changes")
        );
        assert_eq!("slack".parse::<Format>(), Ok(Format::Slack));
        assert!("xml".parse::<Format>().is_err());
    }
}
