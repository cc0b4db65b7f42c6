//! Topics whose delivery is paused because Kafka refused routegate's principal a permission.
//!
//! A refusal (`TOPIC_AUTHORIZATION_FAILED`, `CLUSTER_AUTHORIZATION_FAILED`) is neither the
//! events' fault nor the broker's: an ACL is missing. So the topic's events are not
//! dead-lettered, and the drain neither backs off as a whole nor counts the refusal towards the
//! breaker. The topic pauses: its events stay in the outbox, the drain skips them, and after a
//! backoff (the drain's `backoff_initial`..`backoff_max`, growing while the refusals go on) it
//! tries the topic's oldest events again. A delivery to the topic ends the pause.
//!
//! # Moving the cursor past a paused topic, and back
//!
//! The drain reads the outbox in sequence order after a cursor. Skipping a paused topic's
//! events lets the cursor move past them, so that later events of other topics go out. The
//! drain keeps one invariant: *every pending event at or below the cursor belongs to a topic
//! that is paused and skipped* (a retriable failure resets the cursor to 0, which keeps it
//! trivially). Each paused topic remembers the lowest sequence number it left pending
//! (`first_seq`); all its pending events are at or above it.
//!
//! * A retry moves the cursor back to just before `first_seq`, so the topic's oldest events go
//!   first, in order. Only one topic starts a retry per round.
//! * Refused again (and no retriable failure in that round): the cursor jumps forward to where
//!   it was before the retry. Everything in between is paused events, so a long paused backlog
//!   is not re-read on every retry.
//! * Delivered: the pause ends and the scan goes on from there through the topic's backlog.
//! * A topic being retried is not skipped. If the drain runs out of events before any of the
//!   topic's events came up, the topic has none pending any more and the pause ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Denied;
use super::backoff::Backoff;
use crate::delivery::PausedTopic;

/// The paused topics and the retry under way.
#[derive(Debug)]
pub(super) struct Pauses {
    topics: BTreeMap<String, Pause>,
    backoff_initial: Duration,
    backoff_max: Duration,
    /// The retry started this round: its topic and the cursor to come back to.
    retry: Option<(String, u64)>,
    /// Something changed since the last [`Pauses::report`].
    changed: bool,
}

#[derive(Debug)]
struct Pause {
    denied: Denied,
    /// No pending event of the topic has a lower sequence number.
    first_seq: u64,
    since: DateTime<Utc>,
    backoff: Backoff,
    retry_at: Instant,
    retries: u32,
    /// Its events are tried again (not skipped) until a delivery or a refusal says how it went.
    retrying: bool,
}

/// What a refusal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The topic was not paused before.
    Paused,
    /// A retry was refused again.
    StillPaused,
}

impl Pauses {
    pub fn new(backoff_initial: Duration, backoff_max: Duration) -> Pauses {
        Pauses {
            topics: BTreeMap::new(),
            backoff_initial,
            backoff_max,
            retry: None,
            changed: false,
        }
    }

    /// Whether the drain leaves this topic's events pending without sending them.
    pub fn skips(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|p| !p.retrying)
    }

    /// At the start of a round: when a paused topic's retry is due, mark it as retried and
    /// return where the cursor goes (just before its oldest pending event).
    pub fn start_retry(&mut self, now: Instant, cursor: u64) -> Option<u64> {
        if self.retry.is_some() {
            return None;
        }
        let (topic, pause) = self
            .topics
            .iter_mut()
            .filter(|(_, p)| !p.retrying && p.retry_at <= now)
            .min_by_key(|(_, p)| p.retry_at)?;
        pause.retrying = true;
        self.changed = true;
        self.retry = Some((topic.clone(), cursor));
        Some(pause.first_seq.saturating_sub(1).min(cursor))
    }

    /// Kafka refused `denied` for `topic`; its events from `first_seq` on stay pending.
    pub fn refused(
        &mut self,
        topic: &str,
        denied: Denied,
        first_seq: u64,
        now: Instant,
    ) -> Refusal {
        self.changed = true;
        if let Some(p) = self.topics.get_mut(topic) {
            p.first_seq = p.first_seq.min(first_seq);
            p.denied = denied;
            p.retries += u32::from(p.retrying);
            p.retrying = false;
            p.retry_at = now + p.backoff.next_delay();
            return Refusal::StillPaused;
        }
        let mut backoff = Backoff::new(self.backoff_initial, self.backoff_max);
        let retry_at = now + backoff.next_delay();
        let pause = Pause {
            denied,
            first_seq,
            since: Utc::now(),
            backoff,
            retry_at,
            retries: 0,
            retrying: false,
        };
        self.topics.insert(topic.to_string(), pause);
        Refusal::Paused
    }

    /// Events of a skipped topic were left pending, the lowest being `seq`.
    pub fn left_pending(&mut self, topic: &str, seq: u64) {
        if let Some(p) = self.topics.get_mut(topic) {
            p.first_seq = p.first_seq.min(seq);
        }
    }

    /// Kafka accepted a produce to `topic`: its pause, if any, ends. True if it was paused.
    pub fn delivered(&mut self, topic: &str) -> bool {
        let ended = self.topics.remove(topic).is_some();
        self.changed |= ended;
        ended
    }

    /// The round ended without retriable failures, its events read up to `top`: where the next
    /// round's peek starts. A retry refused again jumps back to where the scan was.
    pub fn next_cursor(&mut self, top: u64) -> u64 {
        match self.retry.take() {
            Some((topic, before)) if self.skips(&topic) => top.max(before),
            _ => top,
        }
    }

    /// The round failed and the next one reads from the oldest pending event: no jump.
    pub fn rescan(&mut self) {
        self.retry = None;
    }

    /// Nothing is pending after the cursor: a topic under retry whose events never came up
    /// has none left, so its pause ends. Returns those topics.
    pub fn drained(&mut self) -> Vec<String> {
        self.retry = None;
        let ended: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, p)| p.retrying)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in &ended {
            self.topics.remove(topic);
            self.changed = true;
        }
        ended
    }

    /// When the next retry is due, if any topic waits for one.
    pub fn next_retry_at(&self) -> Option<Instant> {
        self.topics
            .values()
            .filter(|p| !p.retrying)
            .map(|p| p.retry_at)
            .min()
    }

    /// The paused topics for the delivery status, if anything changed since the last call.
    pub fn report(&mut self, now: Instant) -> Option<Vec<PausedTopic>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let wall = Utc::now();
        let list = self
            .topics
            .iter()
            .map(|(topic, p)| PausedTopic {
                topic: topic.clone(),
                denied: p.denied.to_string(),
                fix: p.denied.fix(),
                since: p.since,
                retries: p.retries,
                next_retry_at: (!p.retrying).then(|| {
                    let wait = p.retry_at.saturating_duration_since(now);
                    wall + chrono::Duration::from_std(wait).unwrap_or_default()
                }),
            })
            .collect();
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(topic: &str) -> Denied {
        Denied {
            operation: "WRITE",
            topic: Some(topic.into()),
            principal: "User:routegate".into(),
            error: "produce: TopicAuthorizationFailed".into(),
        }
    }

    fn pauses() -> Pauses {
        Pauses::new(Duration::from_millis(100), Duration::from_millis(400))
    }

    #[test]
    fn a_refused_topic_is_skipped_until_its_retry_is_due_and_then_tried_from_its_oldest_event() {
        let mut p = pauses();
        let t0 = Instant::now();
        assert_eq!(p.refused("t", denied("t"), 7, t0), Refusal::Paused);
        p.left_pending("t", 3);
        assert!(p.skips("t") && !p.skips("other"));
        assert_eq!(p.start_retry(t0, 50), None, "not due yet");
        let due = p.next_retry_at().expect("a retry is scheduled");
        assert!(due > t0 && due <= t0 + Duration::from_millis(100));
        assert_eq!(p.start_retry(due, 50), Some(2), "just before seq 3");
        assert!(!p.skips("t"), "tried again, not skipped");
        assert_eq!(p.next_retry_at(), None);
    }

    #[test]
    fn a_retry_refused_again_jumps_the_cursor_back_and_one_delivered_ends_the_pause() {
        let mut p = pauses();
        let t0 = Instant::now();
        p.refused("t", denied("t"), 10, t0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(p.start_retry(later, 500), Some(9));
        assert_eq!(p.refused("t", denied("t"), 10, later), Refusal::StillPaused);
        assert_eq!(p.next_cursor(40), 500, "back to where the scan was");
        let report = p.report(later).expect("changed");
        assert_eq!(report[0].retries, 1);
        assert!(report[0].fix.contains("--operation WRITE --topic 't'"));

        assert_eq!(p.start_retry(later + Duration::from_secs(1), 500), Some(9));
        assert!(p.delivered("t"));
        assert_eq!(p.next_cursor(40), 40, "scan on through the backlog");
        assert!(p.report(later).expect("changed").is_empty());
        assert!(p.report(later).is_none(), "reported once");
    }

    #[test]
    fn a_failed_round_forgets_the_jump_and_running_dry_ends_a_retry_with_nothing_pending() {
        let mut p = pauses();
        let t0 = Instant::now();
        p.refused("t", denied("t"), 10, t0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(p.start_retry(later, 500), Some(9));
        p.rescan();
        assert_eq!(p.next_cursor(0), 0);
        assert!(!p.skips("t"), "still being retried");
        assert_eq!(p.drained(), vec!["t".to_string()]);
        assert!(!p.skips("t") && p.next_retry_at().is_none());
    }

    #[test]
    fn retries_back_off_up_to_the_maximum() {
        let mut p = pauses();
        let mut now = Instant::now();
        p.refused("t", denied("t"), 1, now);
        for _ in 0..10 {
            now = p.next_retry_at().unwrap();
            p.start_retry(now, 0).unwrap();
            p.refused("t", denied("t"), 1, now);
            p.next_cursor(0);
        }
        let wait = p.next_retry_at().unwrap() - now;
        assert!(wait <= Duration::from_millis(400), "{wait:?}");
        assert!(wait >= Duration::from_millis(50), "{wait:?}");
    }
}
