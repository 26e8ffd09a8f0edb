//! The queue between the writers and the dispatcher: every event a writer
//! sends, in the order sent, each under a sequence number; and the reaper's
//! events held back until its flush.
//!
//! A writer's share of a send is one short lock of this queue and one push,
//! whatever the number of subscribers: the dispatcher thread does the fan-out.
//! The sequence numbers are the events' one order. An event that does not fit
//! (the queue holds [`QUEUE_BOUND`]) and an abandoned one still take a
//! number; a subscriber learns of them as the gap before the next number it
//! sees, and reports them as `Lagged` before that event.

use std::collections::{HashMap, VecDeque};

use super::Event;

/// The most events waiting for the dispatcher. Past it, a send is dropped
/// (and counted) for every subscriber: the dispatcher is behind, and a writer
/// never waits for it.
pub(super) const QUEUE_BOUND: usize = 1 << 16;

/// An event held back until the flush that makes its write durable.
struct Deferred {
    /// The deferring caller's ticket.
    ticket: u64,
    /// The session it names.
    sid: String,
    event: Event,
}

/// The events sent and not yet taken by the dispatcher, and the deferred ones.
#[derive(Default)]
pub(super) struct Queue {
    /// Sent events, with their sequence numbers, oldest first.
    entries: VecDeque<(u64, Event)>,
    /// The number the next event sent (or lost) takes.
    next_seq: u64,
    /// Events of writes applied but not yet flushed, in the order deferred.
    deferred: Vec<Deferred>,
    /// How many deferred events each session has: a send looks here, not
    /// through a whole reap pass's worth of `deferred`.
    deferred_sids: HashMap<String, usize>,
    next_ticket: u64,
    /// The dispatcher sleeps, waiting for a send to wake it.
    idle: bool,
    /// The dispatcher took a batch and has not finished handing it out.
    busy: bool,
    /// The hub is being dropped: the dispatcher hands out what is left and ends.
    stop: bool,
}

impl Queue {
    /// The number the next event takes: a subscriber that joins now gets the
    /// events from it on.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Queues `event` after the deferred events of the sessions it names
    /// (this write's acknowledgement covers those earlier, applied writes).
    pub fn send(&mut self, event: Event) {
        let named = event.sids();
        if !self.deferred_sids.is_empty()
            && named
                .iter()
                .flatten()
                .any(|sid| self.deferred_sids.contains_key(*sid))
        {
            self.release_where(|d| named.contains(&Some(d.sid.as_str())));
        }
        self.push(event);
    }

    /// Gives `event` the next number and queues it, or drops it if the queue
    /// is full: its number then stays unused, which every subscriber reads as
    /// a missed event.
    fn push(&mut self, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() < QUEUE_BOUND {
            self.entries.push_back((seq, event));
        }
    }

    /// A ticket for a caller that defers its events until its flush.
    pub fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Holds back `event` of session `sid` under `ticket`.
    pub fn defer(&mut self, ticket: u64, sid: &str, event: Event) {
        *self.deferred_sids.entry(sid.to_owned()).or_default() += 1;
        self.deferred.push(Deferred {
            ticket,
            sid: sid.to_owned(),
            event,
        });
    }

    /// Queues, in order, the events deferred under `ticket`.
    pub fn release(&mut self, ticket: u64) {
        if !self.deferred.is_empty() {
            self.release_where(|d| d.ticket == ticket);
        }
    }

    /// Gives up the events deferred under `ticket`: each takes a number that
    /// no event will have, so every subscriber counts it as missed.
    pub fn abandon(&mut self, ticket: u64) {
        let lost = self.take_where(|d| d.ticket == ticket).len() as u64;
        self.next_seq += lost;
    }

    /// Takes, in order, the deferred events for which `pick` holds.
    fn take_where(&mut self, pick: impl Fn(&Deferred) -> bool) -> Vec<Deferred> {
        let (due, kept): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(pick);
        self.deferred = kept;
        for d in &due {
            if let Some(n) = self.deferred_sids.get_mut(&d.sid) {
                *n -= 1;
                if *n == 0 {
                    self.deferred_sids.remove(&d.sid);
                }
            }
        }
        due
    }

    /// Queues, in order, the deferred events for which `pick` holds.
    fn release_where(&mut self, pick: impl Fn(&Deferred) -> bool) {
        for d in self.take_where(pick) {
            self.push(d.event);
        }
    }

    /// Whether the caller that just queued must wake the dispatcher: it was
    /// idle, there is something to hand out, and no other caller woke it since.
    pub fn take_idle(&mut self) -> bool {
        if self.idle && !self.entries.is_empty() {
            self.idle = false;
            return true;
        }
        false
    }

    /// The dispatcher's side: whether there is nothing to hand out, and the
    /// hub is not stopping (so it should sleep); marks it idle if so.
    pub fn wait_for_work(&mut self) -> bool {
        let wait = self.entries.is_empty() && !self.stop;
        self.idle = wait;
        wait
    }

    /// The dispatcher's side: moves every queued event into `batch` (which
    /// is empty), returning false if there are none (the hub stopped).
    pub fn take_batch(&mut self, batch: &mut VecDeque<(u64, Event)>) -> bool {
        self.idle = false;
        if self.entries.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.entries, batch);
        self.busy = true;
        true
    }

    /// The dispatcher handed out its batch.
    pub fn batch_done(&mut self) {
        self.busy = false;
    }

    /// Whether everything sent so far is handed out.
    #[cfg(test)]
    pub fn settled(&self) -> bool {
        self.entries.is_empty() && !self.busy
    }

    /// Asks the dispatcher to hand out what is queued and end.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Whether nothing is deferred (for the hub's tests).
    #[cfg(test)]
    pub fn nothing_deferred(&self) -> bool {
        self.deferred.is_empty() && self.deferred_sids.is_empty()
    }
}
