//! The dispatcher thread (`sessionstore-events`): takes what the writers
//! queued, all of it at once, and hands it to every subscriber, subscriber by
//! subscriber. It is the only sender into the subscribers' channels, and it
//! never waits on one (`try_send` only), so it never waits but for the queue.
//!
//! It holds the hub's shared state, never the store: the hub's `Drop` stops
//! it (it hands out what is queued first, then drops every channel's sender,
//! so receivers see `Disconnected` after the last event) and joins it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

use super::Event;
use super::queue::Queue;
use super::subscriber::Subscriber;

/// What the writers, `subscribe` and the dispatcher share.
#[derive(Default)]
pub(super) struct Shared {
    pub queue: Mutex<Queue>,
    /// Wakes the dispatcher when a send finds it idle, or at stop.
    pub wake: Condvar,
    /// Locked by `subscribe` and by the dispatcher only: never by a writer.
    pub subscribers: Mutex<Vec<Subscriber>>,
    /// Whether anyone is subscribed: writers skip the queue while nobody is.
    pub watched: AtomicBool,
}

/// Starts the dispatcher thread on `shared`.
pub(super) fn start(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sessionstore-events".into())
        .spawn(move || run(&shared))
}

/// The thread: sleep until something is queued, hand it out, again; at stop,
/// hand out what is left and end.
fn run(shared: &Shared) {
    let mut batch: VecDeque<(u64, Event)> = VecDeque::new();
    loop {
        {
            let mut queue = shared.queue.lock();
            while queue.wait_for_work() {
                shared.wake.wait(&mut queue);
            }
            if !queue.take_batch(&mut batch) {
                return;
            }
        }
        {
            let mut subscribers = shared.subscribers.lock();
            subscribers.retain_mut(|s| s.offer_batch(&batch));
            shared
                .watched
                .store(!subscribers.is_empty(), Ordering::Release);
        }
        batch.clear();
        shared.queue.lock().batch_done();
    }
}
