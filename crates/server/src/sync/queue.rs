//! The bounded queues between sockets and rooms: a room's events, and a socket's outbound frames.
//!
//! tokio's `mpsc` allocates its first block of 32 slots and a cache-padded channel of several
//! hundred bytes when it is created, and keeps the block while the channel lives: for an idle
//! connection in its own document, the two queues were about 4 KiB of the 9-14 KiB it cost
//! (BENCHMARKS.md, Y1). This queue is a `VecDeque` under a mutex, empty and unallocated while
//! nothing waits in it (a drain that empties it gives its buffer back), with a semaphore for the
//! bound and two `Notify`s, none of which allocate. The API is the subset of `mpsc` the sync
//! module uses, with the same meaning, and one guarantee more: an item is either queued before the
//! receiver closes or handed back to its sender, never dropped in between (with `mpsc`, a sender
//! holding a permit could push into a channel whose receiver had just closed).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// Creates a queue holding at most `capacity` items.
pub(super) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), senders: 1, closed: false }),
        wake_receiver: Notify::new(),
        space: Semaphore::new(capacity),
        receiver_closed: Notify::new(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken when an item is queued or the last sender goes. `notify_one` keeps a wake-up for a
    /// receiver that is not waiting yet, so none is lost between its check and its wait.
    wake_receiver: Notify,
    /// Free places; a sender takes one before queueing and the receiver gives them back as it
    /// takes items. Closed with the receiver, which fails the senders waiting for a place.
    space: Semaphore,
    /// Woken (all waiters) when the receiver closes, for [`Sender::closed`].
    receiver_closed: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    /// Senders alive; the receiver sees the end of the queue when it reaches 0 with nothing queued.
    senders: usize,
    /// Set once by the receiver (closing or dropped): nothing is queued after it.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` for a sender that holds a place; hands it back if the receiver closed.
    fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        self.wake_receiver.notify_one();
        Ok(())
    }
}

/// The sending half; cloned for every sender.
pub(super) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiver closed: the item comes back.
#[derive(Debug)]
pub(super) struct SendError<T>(pub T);

/// Why [`Sender::try_send`] could not queue its item, which it hands back.
#[derive(Debug)]
pub(super) enum TrySendError<T> {
    Full(T),
    Closed(T),
}

impl<T> Sender<T> {
    /// Queues `item`, waiting for a place while the queue is full.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        let Ok(place) = self.shared.space.acquire().await else { return Err(SendError(item)) };
        // The place now belongs to the item; the receiver gives it back when it takes the item.
        place.forget();
        self.shared.push(item).map_err(SendError)
    }

    /// Queues `item` if there is a place now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.shared.space.try_acquire() {
            Ok(place) => place.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(item)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(item)),
        }
        self.shared.push(item).map_err(TrySendError::Closed)
    }

    /// Whether the receiver has closed (or is gone).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Waits until the receiver closes (or is gone).
    pub async fn closed(&self) {
        loop {
            let woken = self.shared.receiver_closed.notified();
            tokio::pin!(woken);
            // Registered before the check, so a close right after it still wakes this waiter.
            woken.as_mut().enable();
            if self.is_closed() {
                return;
            }
            woken.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            self.shared.wake_receiver.notify_one();
        }
    }
}

/// The receiving half. Dropping it closes the queue and drops what is still queued.
pub(super) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Moves up to `limit` queued items into `into`, waiting while there are none; returns how
    /// many, 0 once every sender is gone (or the queue closed) and nothing is left.
    pub async fn recv_many(&mut self, into: &mut Vec<T>, limit: usize) -> usize {
        loop {
            let taken = self.take(into, limit);
            if taken > 0 || self.ended() {
                return taken;
            }
            self.shared.wake_receiver.notified().await;
        }
    }

    /// The next item, waiting while there is none; `None` once every sender is gone (or the
    /// queue closed) and nothing is left.
    pub async fn recv(&mut self) -> Option<T> {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await;
        one.pop()
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut one = Vec::with_capacity(1);
        self.take(&mut one, 1);
        one.pop()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    /// Refuses every later item (senders get theirs back) and wakes [`Sender::closed`]; what is
    /// queued can still be taken.
    pub fn close(&mut self) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        drop(state);
        self.shared.space.close();
        self.shared.receiver_closed.notify_waiters();
    }

    /// Moves up to `limit` items into `into` without waiting and gives their places back.
    fn take(&self, into: &mut Vec<T>, limit: usize) -> usize {
        let mut state = self.shared.lock();
        let taken = limit.min(state.items.len());
        if taken == 0 {
            return 0;
        }
        if taken == state.items.len() {
            // Emptied: the buffer goes with the items, so an idle queue holds no allocation.
            let items = std::mem::take(&mut state.items);
            drop(state);
            into.extend(items);
        } else {
            into.extend(state.items.drain(..taken));
            drop(state);
        }
        self.shared.space.add_permits(taken);
        taken
    }

    fn ended(&self) -> bool {
        let state = self.shared.lock();
        state.items.is_empty() && (state.senders == 0 || state.closed)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // Dropped outside the lock: an item may own a sender of this very queue.
        let items = std::mem::take(&mut self.shared.lock().items);
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Within its bound a queue takes items at once and hands them out in order; past it
    /// `try_send` refuses and `send` waits until the receiver takes one.
    #[tokio::test]
    async fn holds_its_bound_in_order() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(3).await.map_err(|e| e.0) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no place yet");
        let mut got = Vec::new();
        assert_eq!(rx.recv_many(&mut got, 1).await, 1);
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.recv_many(&mut got, 10).await, 2);
        assert_eq!(got, [1, 2, 3]);
        assert!(rx.is_empty());
    }

    /// Closing hands every later item back, to waiting senders too, and wakes `closed`; what was
    /// queued before stays for the receiver.
    #[tokio::test]
    async fn closing_hands_items_back_and_keeps_what_was_queued() {
        let (tx, mut rx) = channel(1);
        tx.send("queued").await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send("waiting").await.map_err(|e| e.0) }
        });
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(!tx.is_closed());
        rx.close();
        assert_eq!(waiting.await.unwrap(), Err("waiting"));
        tokio::time::timeout(Duration::from_secs(5), closed).await.expect("woken").unwrap();
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send("late"), Err(TrySendError::Closed("late"))));
        assert_eq!(rx.try_recv(), Some("queued"));
        assert_eq!(rx.recv().await, None, "closed and empty");
    }

    /// The receiver sees the end once the last sender is gone and it has taken what was left; a
    /// dropped receiver fails every sender.
    #[tokio::test]
    async fn either_side_going_ends_the_queue() {
        let (tx, mut rx) = channel(4);
        let second = tx.clone();
        tx.send(1).await.unwrap();
        drop(tx);
        let ended = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx.recv().await)
        });
        tokio::task::yield_now().await;
        assert!(!ended.is_finished(), "one sender is left");
        drop(second);
        assert_eq!(ended.await.unwrap(), (Some(1), None));

        let (tx, rx) = channel(4);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5).await.map_err(|e| e.0), Err(5));
    }
}
