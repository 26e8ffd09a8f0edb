//! Lifecycle events: what a subscriber receives ([`Event`]), and the hub that
//! hands them out (`Events`), one bounded channel per subscriber.
//!
//! The hub never blocks a writer: it only ever `try_send`s. A subscriber whose
//! channel is full misses the event; the hub counts what it missed and sends
//! [`Event::Lagged`] before its next event. A subscriber whose receiver was
//! dropped is forgotten at the next send.

use std::sync::atomic::{AtomicBool, Ordering};

use std::collections::HashMap;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;

/// Something that happened to a session, sent to every subscriber
/// ([`SessionStore::subscribe`](crate::SessionStore::subscribe)) once the
/// write that made it happen is acknowledged at the store's durability.
///
/// On an embedded store, every session that ends sends exactly one of
/// `Destroyed`, `Expired` or `Regenerated` (which ends the old id and starts
/// the new one), so counting `Created` against them counts the sessions
/// this process's store holds, as far as no `Lagged` came. (Not on Redis:
/// see below.)
///
/// What is **not** an event: a save, touch, `set_idle_timeout` or
/// `set_principal` (they change a session, they do not start or end it); and
/// a session that a `get` finds past its deadline. That read writes nothing,
/// so nothing about the session changed yet: it is still stored, and the
/// `Expired` comes when the deletion does (the reaper's pass, or a `destroy`,
/// `create_new_session` or import that finds it expired). A store on Redis has
/// no reaper: Redis expires keys on its own, unseen, so there `Expired` comes
/// only from this store's own calls that delete an expired session.
///
/// # Examples
///
/// ```
/// use sessionstore::{Event, Store};
///
/// let store = Store::temporary()?;
/// let events = store.subscribe();
/// let s = store.create()?;
/// store.destroy(s.id())?;
/// assert_eq!(events.try_recv().ok(), Some(Event::Created { sid: s.id().to_owned() }));
/// assert_eq!(events.try_recv().ok(), Some(Event::Destroyed { sid: s.id().to_owned() }));
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session was created (`create`, `create_new_session`, or an import).
    Created {
        /// Its id.
        sid: String,
    },
    /// A live session was destroyed (`destroy`, `destroy_all_of`, or an
    /// import that replaced it).
    Destroyed {
        /// Its id.
        sid: String,
    },
    /// An expired session was deleted: by the reaper, after the pass's flush
    /// made the deletion durable, or by a call that found it expired.
    Expired {
        /// Its id.
        sid: String,
    },
    /// A session moved to a fresh id (`regenerate`).
    Regenerated {
        /// The id it had; it reads as gone now.
        old: String,
        /// The id it lives under now.
        new: String,
    },
    /// This subscriber's channel was full and it missed `missed` events
    /// since the last one it received.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

impl Event {
    /// The sessions the event names.
    fn sids(&self) -> [Option<&str>; 2] {
        match self {
            Event::Created { sid } | Event::Destroyed { sid } | Event::Expired { sid } => {
                [Some(sid), None]
            }
            Event::Regenerated { old, new } => [Some(old), Some(new)],
            Event::Lagged { .. } => [None, None],
        }
    }
}

/// One subscriber: its channel, and how many events it missed since its last.
struct Subscriber {
    tx: Sender<Event>,
    missed: u64,
}

impl Subscriber {
    /// Offers `event`, after a `Lagged` if events were missed. Returns
    /// whether the receiver is still there.
    ///
    /// After a lag, the `Lagged` and the event go together if two slots are
    /// free; if one is, the `Lagged` takes it and counts the event among
    /// the missed, so that the next event has room (a `Lagged` never fills
    /// the channel for good). Only the hub sends, under its lock, and the
    /// receiver only frees slots, so the free slots seen here are there.
    fn offer(&mut self, event: &Event) -> bool {
        if self.missed > 0 {
            let free = self
                .tx
                .capacity()
                .unwrap_or(usize::MAX)
                .saturating_sub(self.tx.len());
            let lagged = match free {
                // Still full: the send below counts the event, or finds the receiver gone.
                0 => return self.try_event(event),
                1 => self.missed.saturating_add(1),
                _ => self.missed,
            };
            match self.tx.try_send(Event::Lagged { missed: lagged }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed = self.missed.saturating_add(1);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
            if free == 1 {
                return true;
            }
        }
        self.try_event(event)
    }

    /// Sends `event`, or counts it as missed. Returns whether the receiver
    /// is still there.
    fn try_event(&mut self, event: &Event) -> bool {
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// An event held back until the flush that makes its write durable.
struct Deferred {
    /// The deferring caller's ticket.
    ticket: u64,
    /// The session it names.
    sid: String,
    event: Event,
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    /// Events of writes applied but not yet flushed, in the order deferred.
    deferred: Vec<Deferred>,
    /// How many deferred events each session has: a send looks here, not
    /// through a whole reap pass's worth of `deferred`.
    deferred_sids: HashMap<String, usize>,
    next_ticket: u64,
}

impl Inner {
    fn broadcast(&mut self, event: &Event) {
        self.subscribers.retain_mut(|s| s.offer(event));
    }

    fn watched(&self) -> bool {
        !self.subscribers.is_empty()
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

    /// Sends, in order, the deferred events for which `pick` holds.
    fn release_where(&mut self, pick: impl Fn(&Deferred) -> bool) {
        for d in self.take_where(pick) {
            self.broadcast(&d.event);
        }
    }
}

/// The subscribers of one store, and the events deferred until a flush.
pub(crate) struct Events {
    capacity: usize,
    /// Whether anyone is subscribed: writers skip the lock while nobody is.
    watched: AtomicBool,
    inner: Mutex<Inner>,
}

impl Events {
    /// A hub whose subscribers each get a channel of `capacity` events.
    pub fn new(capacity: usize) -> Events {
        Events {
            capacity,
            watched: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A new subscriber's receiver.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = bounded(self.capacity);
        let mut inner = self.inner.lock();
        inner.subscribers.push(Subscriber { tx, missed: 0 });
        self.watched.store(true, Ordering::Release);
        rx
    }

    /// Whether anyone is subscribed (as of the last send: a dropped receiver
    /// is noticed there).
    fn watched(&self) -> bool {
        self.watched.load(Ordering::Acquire)
    }

    /// Sends `event` to every subscriber. The caller holds the lock of every
    /// session it names, and its write was acknowledged. A deferred event of
    /// a session it names goes first: this write's acknowledgement covers
    /// that earlier, applied write.
    pub fn send(&self, event: Event) {
        if self.watched() {
            self.send_watched(event);
        }
    }

    /// `send` when someone is subscribed: out of line, so that the path of
    /// a store nobody watches stays one atomic load (and so that a profiler
    /// sees what sending costs).
    #[inline(never)]
    fn send_watched(&self, event: Event) {
        let mut inner = self.inner.lock();
        let named = event.sids();
        if named
            .iter()
            .flatten()
            .any(|sid| inner.deferred_sids.contains_key(*sid))
        {
            inner.release_where(|d| named.contains(&Some(d.sid.as_str())));
        }
        inner.broadcast(&event);
        self.watched.store(inner.watched(), Ordering::Release);
    }

    /// A ticket for a caller that writes without flushing (the reaper's
    /// pass) and defers its events until its flush.
    pub fn ticket(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.next_ticket += 1;
        inner.next_ticket
    }

    /// Holds back `event` of session `sid`, whose write was applied but not
    /// flushed, until [`release`](Self::release) of `ticket` (after the
    /// caller's flush) or an event of a later write of `sid`. The caller
    /// holds the session's lock.
    pub fn defer(&self, ticket: u64, sid: &str, event: Event) {
        if !self.watched() {
            return;
        }
        let mut inner = self.inner.lock();
        *inner.deferred_sids.entry(sid.to_owned()).or_default() += 1;
        inner.deferred.push(Deferred {
            ticket,
            sid: sid.to_owned(),
            event,
        });
    }

    /// Sends the events deferred under `ticket`, in order: the flush that
    /// made their writes durable has returned.
    pub fn release(&self, ticket: u64) {
        let mut inner = self.inner.lock();
        if inner.deferred.is_empty() {
            return;
        }
        inner.release_where(|d| d.ticket == ticket);
        self.watched.store(inner.watched(), Ordering::Release);
    }

    /// Gives up the events deferred under `ticket`: the flush failed, so they
    /// cannot be sent as durable. Every subscriber counts them as missed and
    /// hears of them through its next `Lagged`.
    pub fn abandon(&self, ticket: u64) {
        let mut inner = self.inner.lock();
        let lost = inner.take_where(|d| d.ticket == ticket).len() as u64;
        if lost > 0 {
            for s in &mut inner.subscribers {
                s.missed = s.missed.saturating_add(lost);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(n: u32) -> Event {
        Event::Created {
            sid: format!("s{n}"),
        }
    }

    #[test]
    fn a_full_channel_counts_what_it_missed_and_says_so_next() {
        let hub = Events::new(2);
        let rx = hub.subscribe();
        for n in 0..5 {
            hub.send(created(n));
        }
        assert_eq!(rx.try_recv().ok(), Some(created(0)));
        assert_eq!(rx.try_recv().ok(), Some(created(1)));
        assert!(rx.try_recv().is_err());
        hub.send(created(5));
        assert_eq!(rx.try_recv().ok(), Some(Event::Lagged { missed: 3 }));
        assert_eq!(rx.try_recv().ok(), Some(created(5)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn with_one_free_slot_the_lagged_counts_the_event_and_the_next_one_fits() {
        let hub = Events::new(1);
        let rx = hub.subscribe();
        hub.send(created(0));
        hub.send(created(1));
        hub.send(created(2));
        assert_eq!(rx.try_recv().ok(), Some(created(0)));
        // One free slot: the Lagged takes it and counts this event too.
        hub.send(created(3));
        assert_eq!(rx.try_recv().ok(), Some(Event::Lagged { missed: 3 }));
        hub.send(created(4));
        assert_eq!(rx.try_recv().ok(), Some(created(4)));
    }

    #[test]
    fn a_dropped_receiver_is_forgotten() {
        let hub = Events::new(4);
        let kept = hub.subscribe();
        drop(hub.subscribe());
        hub.send(created(0));
        assert_eq!(hub.inner.lock().subscribers.len(), 1);
        assert_eq!(kept.try_recv().ok(), Some(created(0)));
        // A receiver dropped while its channel is full is forgotten too.
        let full = hub.subscribe();
        for n in 1..=6 {
            hub.send(created(n));
        }
        drop(full);
        drop(kept);
        hub.send(created(7));
        assert!(hub.inner.lock().subscribers.is_empty());
        assert!(!hub.watched());
    }

    fn expired(s: &str) -> Event {
        Event::Expired { sid: s.into() }
    }

    #[test]
    fn deferred_events_wait_for_their_tickets_release_or_a_later_event_of_their_session() {
        let hub = Events::new(8);
        let rx = hub.subscribe();
        let (mine, other) = (hub.ticket(), hub.ticket());
        hub.defer(mine, "a", expired("a"));
        hub.defer(other, "c", expired("c"));
        hub.defer(mine, "b", expired("b"));
        assert!(rx.try_recv().is_err());
        hub.send(Event::Created { sid: "b".into() });
        assert_eq!(rx.try_recv().ok(), Some(expired("b")));
        assert_eq!(rx.try_recv().ok(), Some(Event::Created { sid: "b".into() }));
        hub.release(mine);
        assert_eq!(rx.try_recv().ok(), Some(expired("a")));
        assert!(
            rx.try_recv().is_err(),
            "another ticket's event waits for its own flush"
        );
        hub.release(other);
        assert_eq!(rx.try_recv().ok(), Some(expired("c")));
        assert!(hub.inner.lock().deferred_sids.is_empty());
    }

    #[test]
    fn a_regenerate_releases_the_deferred_events_of_both_its_ids() {
        let hub = Events::new(8);
        let rx = hub.subscribe();
        let t = hub.ticket();
        hub.defer(t, "new", expired("new"));
        hub.defer(t, "x", expired("x"));
        let moved = Event::Regenerated {
            old: "old".into(),
            new: "new".into(),
        };
        hub.send(moved.clone());
        assert_eq!(rx.try_recv().ok(), Some(expired("new")));
        assert_eq!(rx.try_recv().ok(), Some(moved));
        assert!(rx.try_recv().is_err());
        hub.abandon(t);
        assert!(hub.inner.lock().deferred_sids.is_empty());
    }

    #[test]
    fn abandoned_events_are_counted_as_missed() {
        let hub = Events::new(8);
        let rx = hub.subscribe();
        let t = hub.ticket();
        hub.defer(t, "a", expired("a"));
        hub.defer(t, "b", expired("b"));
        hub.abandon(t);
        hub.send(created(0));
        assert_eq!(rx.try_recv().ok(), Some(Event::Lagged { missed: 2 }));
        assert_eq!(rx.try_recv().ok(), Some(created(0)));
    }

    #[test]
    fn nothing_is_kept_while_nobody_listens() {
        let hub = Events::new(8);
        hub.send(created(0));
        hub.defer(hub.ticket(), "a", expired("a"));
        assert!(hub.inner.lock().deferred.is_empty());
    }
}
