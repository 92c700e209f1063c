//! What the subscription heard, waiting for the listener: a queue bounded in messages and in
//! bytes. A message that finds it full is dropped and counted, never waited for, so a node whose
//! listener falls behind (a slow database during a catch-up, a starved process) holds at most
//! the bound however fast the bus talks. The listener then hears [`Heard::Dropped`] and catches
//! up from the database, which is why dropping is safe (see the `bus` module docs).
//!
//! Messages are offered from inside the Redis connection's reader ([`Arrivals::message`] never
//! waits, as the redis crate's push sender must not), so nothing else buffers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::Heard;

/// The listener is gone (the node is shutting down).
#[derive(Debug)]
pub struct Closed;

struct Shared {
    /// Bytes of the messages in the queue; the listener subtracts what it takes.
    queued_bytes: AtomicUsize,
    /// Messages dropped since the listener last heard of drops.
    dropped: AtomicU64,
    /// Most bytes that may wait; one message is always accepted into an empty queue, so a
    /// message larger than the bound is not dropped for its size alone.
    max_bytes: usize,
}

/// The subscription's end of the queue.
#[derive(Clone)]
pub struct Arrivals {
    tx: mpsc::Sender<Heard>,
    shared: Arc<Shared>,
}

/// The listener's end of the queue.
pub struct Inbox {
    rx: mpsc::Receiver<Heard>,
    shared: Arc<Shared>,
}

/// A queue holding at most `messages` messages and `bytes` bytes of them.
pub fn bounded(messages: usize, bytes: usize) -> (Arrivals, Inbox) {
    let (tx, rx) = mpsc::channel(messages);
    let shared = Arc::new(Shared { queued_bytes: AtomicUsize::new(0), dropped: AtomicU64::new(0), max_bytes: bytes });
    (Arrivals { tx, shared: shared.clone() }, Inbox { rx, shared })
}

impl Arrivals {
    /// Queues a received message, or drops and counts it if the queue is full. Never waits.
    pub fn message(&self, payload: Vec<u8>) {
        let len = payload.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let over = before > 0 && before + len > self.shared.max_bytes;
        if over || self.tx.try_send(Heard::Message(payload)).is_err() {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::AcqRel);
            metrics::counter!("concord_bus_received_dropped_total").increment(1);
        }
    }

    /// Reports a change of the subscription ([`Heard::Missed`], [`Heard::Down`]); these are few
    /// and must not be lost, so this waits for room in the queue.
    pub async fn status(&self, heard: Heard) -> Result<(), Closed> {
        self.tx.send(heard).await.map_err(|_| Closed)
    }
}

impl Inbox {
    /// The next thing heard: [`Heard::Dropped`] first if messages were dropped since the last
    /// call (a drop happens only while messages wait, so one is always taken after it).
    pub async fn recv(&mut self) -> Option<Heard> {
        let dropped = self.shared.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            return Some(Heard::Dropped(dropped));
        }
        let heard = self.rx.recv().await?;
        if let Heard::Message(payload) = &heard {
            self.shared.queued_bytes.fetch_sub(payload.len(), Ordering::AcqRel);
        }
        Some(heard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers messages of these sizes to a queue of `messages` and `bytes`, then drains it:
    /// what the listener hears, as sizes of messages and `D<n>` for drops.
    async fn check(messages: usize, bytes: usize, offered: &[usize], expected: &str) {
        let (arrivals, mut inbox) = bounded(messages, bytes);
        for &size in offered {
            arrivals.message(vec![0; size]);
        }
        drop(arrivals);
        let mut heard = Vec::new();
        while let Some(next) = inbox.recv().await {
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
        let (arrivals, mut inbox) = bounded(8, 50);
        arrivals.message(vec![0; 40]);
        arrivals.message(vec![0; 40]);
        assert!(matches!(inbox.recv().await, Some(Heard::Dropped(1))));
        assert!(matches!(inbox.recv().await, Some(Heard::Message(m)) if m.len() == 40));
        // Freed: the next one fits, and a status is never dropped.
        arrivals.message(vec![0; 40]);
        arrivals.status(Heard::Down).await.unwrap();
        assert!(matches!(inbox.recv().await, Some(Heard::Message(m)) if m.len() == 40));
        assert!(matches!(inbox.recv().await, Some(Heard::Down)));
        arrivals.message(vec![0; 40]);
        arrivals.message(vec![0; 40]);
        assert!(matches!(inbox.recv().await, Some(Heard::Dropped(1))));
    }
}
