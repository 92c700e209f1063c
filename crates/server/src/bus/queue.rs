//! The bus's queues, bounded in messages and in bytes, between a side that must never wait and a
//! task that drains them: what the subscription heard, waiting for the listener, and what this
//! node publishes, waiting for the publisher. A message that finds its queue full is dropped and
//! counted, never waited for, so a node whose listener falls behind (a slow database during a
//! catch-up, a starved process) or whose Redis is slow holds at most the bound however fast
//! messages come. The draining side learns of the drops ([`Queue::take_dropped`]) and makes up
//! for them from the database: the listener catches up, the publisher asks every node to (see
//! the `bus` module docs for why that is safe).
//!
//! Received messages are offered from inside the Redis connection's reader ([`Offers::offer`]
//! never waits, as the redis crate's push sender must not), so nothing else buffers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::Heard;
use super::codec::Topic;

/// The draining side is gone (the node is shutting down).
#[derive(Debug)]
pub struct Closed;

/// What a queue counts against its byte bound.
pub trait Weigh {
    fn bytes(&self) -> usize;
}

impl Weigh for Heard {
    fn bytes(&self) -> usize {
        match self {
            Heard::Message(payload) => payload.len(),
            Heard::Missed | Heard::Down | Heard::Dropped(_) => 0,
        }
    }
}

/// A message waiting to be published.
pub struct Outgoing {
    pub topic: Topic,
    pub payload: Vec<u8>,
}

impl Weigh for Outgoing {
    fn bytes(&self) -> usize {
        self.payload.len()
    }
}

struct Shared {
    /// Bytes of the messages in the queue; the draining side subtracts what it takes.
    queued_bytes: AtomicUsize,
    /// Messages dropped since the draining side last asked.
    dropped: AtomicU64,
    /// Most bytes that may wait; one message is always accepted into an empty queue, so a
    /// message larger than the bound is not dropped for its size alone.
    max_bytes: usize,
}

/// The offering end of a queue.
pub struct Offers<T> {
    tx: mpsc::Sender<T>,
    shared: Arc<Shared>,
}

// Not derived: that would ask `T: Clone`.
impl<T> Clone for Offers<T> {
    fn clone(&self) -> Self {
        Offers { tx: self.tx.clone(), shared: self.shared.clone() }
    }
}

/// The draining end of a queue.
pub struct Queue<T> {
    rx: mpsc::Receiver<T>,
    shared: Arc<Shared>,
}

/// A queue holding at most `messages` messages and `bytes` bytes of them.
pub fn bounded<T>(messages: usize, bytes: usize) -> (Offers<T>, Queue<T>) {
    let (tx, rx) = mpsc::channel(messages);
    let shared = Arc::new(Shared { queued_bytes: AtomicUsize::new(0), dropped: AtomicU64::new(0), max_bytes: bytes });
    (Offers { tx, shared: shared.clone() }, Queue { rx, shared })
}

impl<T: Weigh> Offers<T> {
    /// Queues `item`, or drops and counts it if the queue is full (false). Never waits.
    pub fn offer(&self, item: T) -> bool {
        let len = item.bytes();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let over = before > 0 && before + len > self.shared.max_bytes;
        if over || self.tx.try_send(item).is_err() {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues what must not be lost (a change of the subscription: [`Heard::Missed`],
    /// [`Heard::Down`]; these are few), waiting for room in the queue.
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        let len = item.bytes();
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.tx.send(item).await.map_err(|_| {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            Closed
        })
    }
}

impl<T: Weigh> Queue<T> {
    /// The next message; `None` once every offering end is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await?;
        self.shared.queued_bytes.fetch_sub(item.bytes(), Ordering::AcqRel);
        Some(item)
    }

    /// How many messages were dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.shared.dropped.swap(0, Ordering::AcqRel)
    }
}

/// What the subscription heard, for the listener.
pub type Inbox = Queue<Heard>;

impl Inbox {
    /// The next thing heard: [`Heard::Dropped`] first if messages were dropped since the last
    /// call (a drop happens only while messages wait, so one is always taken after it).
    pub async fn heard(&mut self) -> Option<Heard> {
        match self.take_dropped() {
            0 => self.recv().await,
            dropped => Some(Heard::Dropped(dropped)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers messages of these sizes to a queue of `messages` and `bytes`, then drains it:
    /// what the listener hears, as sizes of messages and `D<n>` for drops.
    async fn check(messages: usize, bytes: usize, offered: &[usize], expected: &str) {
        let (arrivals, mut inbox): (Offers<Heard>, Inbox) = bounded(messages, bytes);
        for &size in offered {
            arrivals.offer(Heard::Message(vec![0; size]));
        }
        drop(arrivals);
        let mut heard = Vec::new();
        while let Some(next) = inbox.heard().await {
            heard.push(match next {
                Heard::Message(payload) => payload.len().to_string(),
                Heard::Dropped(n) => format!("D{n}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(heard.join(" "), expected, "{messages} messages, {bytes} bytes, offered {offered:?}");
    }

    #[tokio::test]
    async fn the_queue_holds_its_bound_and_reports_what_it_dropped() {
        // Within both bounds: everything, in order.
        check(4, 100, &[10, 20, 30], "10 20 30").await;
        // Past the count: the excess is dropped, and heard of before the rest is taken.
        check(2, 100, &[1, 2, 3, 4], "D2 1 2").await;
        // Past the bytes: one more that would pass them is dropped; smaller ones still fit.
        check(8, 50, &[30, 30, 10], "D1 30 10").await;
        // A message larger than the bound is taken into an empty queue.
        check(8, 50, &[80, 1], "D1 80").await;
        check(8, 50, &[], "").await;
    }

    #[tokio::test]
    async fn taking_a_message_frees_its_bytes_and_later_drops_are_heard_again() {
        let (arrivals, mut inbox): (Offers<Heard>, Inbox) = bounded(8, 50);
        arrivals.offer(Heard::Message(vec![0; 40]));
        arrivals.offer(Heard::Message(vec![0; 40]));
        assert!(matches!(inbox.heard().await, Some(Heard::Dropped(1))));
        assert!(matches!(inbox.heard().await, Some(Heard::Message(m)) if m.len() == 40));
        // Freed: the next one fits, and a status is never dropped.
        arrivals.offer(Heard::Message(vec![0; 40]));
        arrivals.send(Heard::Down).await.unwrap();
        assert!(matches!(inbox.heard().await, Some(Heard::Message(m)) if m.len() == 40));
        assert!(matches!(inbox.heard().await, Some(Heard::Down)));
        arrivals.offer(Heard::Message(vec![0; 40]));
        arrivals.offer(Heard::Message(vec![0; 40]));
        assert!(matches!(inbox.heard().await, Some(Heard::Dropped(1))));
    }

    #[tokio::test]
    async fn messages_to_publish_are_bounded_by_their_payloads_and_drops_are_reported() {
        let (offers, mut pending) = bounded::<Outgoing>(8, 50);
        let message = |size| Outgoing { topic: Topic::Docs, payload: vec![0; size] };
        assert!(offers.offer(message(30)));
        assert!(!offers.offer(message(30)), "past the bytes");
        assert!(offers.offer(message(10)));
        assert_eq!(pending.take_dropped(), 1);
        assert_eq!(pending.take_dropped(), 0, "reported once");
        assert_eq!(pending.recv().await.unwrap().payload.len(), 30);
        assert!(offers.offer(message(30)), "freed by taking one");
    }
}
