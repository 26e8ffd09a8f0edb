//! One subscriber as the dispatcher sees it: its channel, the next event
//! number it is owed, and how many events it missed since the last one it
//! received.
//!
//! The order rule it keeps: a gap is reported by one `Lagged` that goes into
//! the channel before the next event, never after it. Only the dispatcher
//! sends, and the receiver only frees slots, so the free slots `len` shows
//! are a lower bound of those a send finds.

use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};

use super::Event;

/// What became of one event offered to a subscriber.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// It was sent, or counted in a `Lagged` that was sent: go on.
    Sent,
    /// The channel was full: it is counted as missed.
    Full,
    /// The receiver was dropped.
    Gone,
}

pub(super) struct Subscriber {
    tx: Sender<Event>,
    capacity: usize,
    /// The number of the next event this subscriber is owed: events numbered
    /// lower were sent before it subscribed, or are already handled.
    next: u64,
    /// Events missed since the last one sent, not yet reported.
    missed: u64,
}

impl Subscriber {
    /// A subscriber owed every event numbered `from` or later.
    pub fn new(tx: Sender<Event>, capacity: usize, from: u64) -> Subscriber {
        Subscriber {
            tx,
            capacity,
            next: from,
            missed: 0,
        }
    }

    /// Hands this subscriber the events of `batch` (numbered, in increasing
    /// order) that it is owed. Returns whether the receiver is still there.
    ///
    /// A number skipped since the last one is a missed event (dropped by a
    /// full queue, or abandoned). Once the channel is found full, the rest
    /// of the batch is counted as missed without trying each: a subscriber
    /// that reads nothing costs the dispatcher one send per batch, not one
    /// per event.
    pub fn offer_batch(&mut self, batch: &VecDeque<(u64, Event)>) -> bool {
        for (seq, event) in batch {
            if *seq < self.next {
                continue;
            }
            self.missed = self.missed.saturating_add(seq - self.next);
            self.next = seq + 1;
            match self.offer(event) {
                Offer::Sent => {}
                Offer::Gone => return false,
                Offer::Full => {
                    if let Some((last, _)) = batch.back()
                        && *last >= self.next
                    {
                        self.missed = self.missed.saturating_add(last + 1 - self.next);
                        self.next = last + 1;
                    }
                    return true;
                }
            }
        }
        true
    }

    /// Offers `event`, after a `Lagged` if events were missed.
    ///
    /// After a lag, the `Lagged` and the event go together if two slots are
    /// free. With one or none free as far as `len` shows, the `Lagged`
    /// alone is offered, counting the event among the missed: the event
    /// never goes into a slot that the receiver freed after `len` looked,
    /// ahead of its `Lagged`; and a `Lagged` that takes the last slot leaves
    /// the next event room once the receiver reads it.
    fn offer(&mut self, event: &Event) -> Offer {
        if self.missed == 0 {
            return self.try_event(event);
        }
        let free = self.capacity.saturating_sub(self.tx.len());
        if free >= 2 {
            return match self.tx.try_send(Event::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => {
                    self.missed = 0;
                    self.try_event(event)
                }
                Err(e) => self.failed(e),
            };
        }
        match self.tx.try_send(Event::Lagged {
            missed: self.missed.saturating_add(1),
        }) {
            Ok(()) => {
                self.missed = 0;
                Offer::Sent
            }
            Err(e) => self.failed(e),
        }
    }

    /// Sends `event`, or counts it as missed.
    fn try_event(&mut self, event: &Event) -> Offer {
        match self.tx.try_send(event.clone()) {
            Ok(()) => Offer::Sent,
            Err(e) => self.failed(e),
        }
    }

    /// A send that did not go in: the event is missed, or the receiver gone.
    fn failed(&mut self, e: TrySendError<Event>) -> Offer {
        match e {
            TrySendError::Full(_) => {
                self.missed = self.missed.saturating_add(1);
                Offer::Full
            }
            TrySendError::Disconnected(_) => Offer::Gone,
        }
    }
}
