//! Deduplication of notifications: at most one message per subject per
//! window, the transitions in between folded into the next one with a count.
//!
//! # Expected flow
//! A subject's first transition is sent at once. Another within the window
//! waits; one after it replaces the waiting one and counts as folded. When
//! the window ends, the waiting transition (the subject's latest state) is
//! sent, saying how many were folded into it. Pure: time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Transition;

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub transition: Transition,
    /// Transitions of the same subject that were not sent on their own.
    pub folded: u32,
    pub time: jiff::Timestamp,
}

#[derive(Debug)]
struct Slot {
    last_sent: Instant,
    pending: Option<Transition>,
    folded: u32,
}

/// The dedupe state of every subject.
#[derive(Debug)]
pub struct Folder {
    window: Duration,
    slots: HashMap<String, Slot>,
}

impl Folder {
    /// At most one message per subject per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            slots: HashMap::new(),
        }
    }

    /// Takes a transition: the message to send now, or `None` when it waits.
    pub fn offer(&mut self, transition: Transition, now: Instant) -> Option<Message> {
        match self.slots.get_mut(&transition.subject) {
            Some(slot) if now < slot.last_sent + self.window => {
                if slot.pending.replace(transition).is_some() {
                    slot.folded += 1;
                }
                None
            }
            _ => {
                let slot = Slot {
                    last_sent: now,
                    pending: None,
                    folded: 0,
                };
                self.slots.insert(transition.subject.clone(), slot);
                Some(message(transition, 0))
            }
        }
    }

    /// The waiting transitions whose window has ended, as messages; subjects
    /// quiet for a whole window are forgotten.
    pub fn due(&mut self, now: Instant) -> Vec<Message> {
        let window = self.window;
        let mut out = Vec::new();
        self.slots.retain(|_, slot| {
            if now < slot.last_sent + window {
                return true;
            }
            match slot.pending.take() {
                Some(transition) => {
                    out.push(message(transition, slot.folded));
                    slot.folded = 0;
                    slot.last_sent = now;
                    true
                }
                None => false,
            }
        });
        out
    }

    /// When the next waiting transition is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.pending.is_some())
            .map(|s| s.last_sent + self.window)
            .min()
    }
}

fn message(transition: Transition, folded: u32) -> Message {
    Message {
        transition,
        folded,
        time: jiff::Timestamp::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::What;
    use super::*;

    fn t(subject: &str, what: What) -> Transition {
        Transition::new(subject, what, "m")
    }

    #[test]
    fn a_flapping_subject_sends_one_message_a_window_with_the_count_folded() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut f = Folder::new(Duration::from_secs(60));
        let first = f.offer(t("Stack/a", What::Failing), at(0)).unwrap();
        assert_eq!((first.transition.what, first.folded), (What::Failing, 0));
        assert_eq!(f.offer(t("Stack/a", What::Recovered), at(1)), None);
        assert_eq!(f.offer(t("Stack/a", What::Failing), at(2)), None);
        assert_eq!(f.offer(t("Stack/a", What::Recovered), at(3)), None);
        // Another subject is not held back by this one.
        assert!(f.offer(t("Stack/b", What::Failing), at(4)).is_some());
        assert_eq!(f.next_due(), Some(at(60)));
        assert!(f.due(at(59)).is_empty());
        let due = f.due(at(60));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].transition.what, due[0].folded),
            (What::Recovered, 2)
        );
        // The next window starts at that message.
        assert_eq!(f.offer(t("Stack/a", What::Failing), at(100)), None);
        assert_eq!(f.due(at(120)).len(), 1);
    }

    #[test]
    fn a_quiet_subject_is_sent_at_once_and_then_forgotten() {
        let start = Instant::now();
        let mut f = Folder::new(Duration::from_secs(60));
        assert!(f.offer(t("Stack/a", What::Failing), start).is_some());
        assert!(f.due(start + Duration::from_secs(61)).is_empty());
        assert_eq!(f.next_due(), None);
        let later = start + Duration::from_secs(62);
        assert_eq!(
            f.offer(t("Stack/a", What::Recovered), later)
                .unwrap()
                .folded,
            0
        );
    }
}
