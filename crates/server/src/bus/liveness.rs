//! Which other nodes are alive, judged from what the bus carries (pure). Every node publishes a
//! heartbeat each [`super::HEARTBEAT`]; a node is dead once this node has heard
//! [`DEAD_AFTER_BEATS`] of its *own* heartbeats come back since the other last said anything.
//! Counting its own heartbeats rather than reading the clock means a node that is itself behind
//! (its listener stalled, its queue full) judges nobody dead for the time it was not listening:
//! its own heartbeats are as late as everyone else's.

use std::collections::HashMap;

use super::codec::NodeId;

/// A node silent for this many of this node's heartbeats is dead: with one a second, its
/// connections' awareness goes within about three seconds of its death instead of the 30 s
/// awareness timeout, while one late or dropped heartbeat does not count as a death.
pub const DEAD_AFTER_BEATS: u32 = 3;

#[derive(Debug, Default)]
pub struct Liveness {
    /// Each node heard from, with how many of this node's heartbeats came back since.
    silent_for: HashMap<NodeId, u32>,
}

impl Liveness {
    /// Something from another node arrived: it is alive.
    pub fn heard(&mut self, node: NodeId) {
        self.silent_for.insert(node, 0);
    }

    /// This node's own heartbeat came back: returns the nodes that are now dead, forgotten
    /// until they speak again.
    pub fn beat(&mut self) -> Vec<NodeId> {
        let mut dead = Vec::new();
        self.silent_for.retain(|node, silent| {
            *silent += 1;
            let alive = *silent < DEAD_AFTER_BEATS;
            if !alive {
                dead.push(*node);
            }
            alive
        });
        dead
    }

    /// This node may have missed messages (subscribed again, dropped some): nobody is judged
    /// on the silence before now.
    pub fn forgive(&mut self) {
        self.silent_for.values_mut().for_each(|silent| *silent = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs events (`a`/`b`: that node spoke, `.`: own heartbeat, `!`: forgive) and returns the
    /// deaths each heartbeat declared, as `beat index:node`.
    fn check(events: &str, expected: &[&str]) {
        let name = |node: NodeId| if node == NodeId([b'a'; 16]) { "a" } else { "b" };
        let mut liveness = Liveness::default();
        let mut deaths = Vec::new();
        for (at, event) in events.chars().enumerate() {
            match event {
                '.' => deaths.extend(liveness.beat().into_iter().map(|n| format!("{at}:{}", name(n)))),
                '!' => liveness.forgive(),
                node => liveness.heard(NodeId([node as u8; 16])),
            }
        }
        deaths.sort();
        assert_eq!(deaths, expected, "{events}");
    }

    #[test]
    fn a_node_is_dead_after_three_of_our_heartbeats_without_a_word() {
        check("a..", &[]);
        check("a...", &["3:a"]);
        // Dead once: forgotten afterwards, alive again when it speaks.
        check("a......", &["3:a"]);
        check("a...a...", &["3:a", "7:a"]);
        // Speaking in between keeps it alive; each node counts on its own.
        check("ab..a..a..", &["5:b"]);
        // What was missed is forgiven.
        check("a..!..", &[]);
        check("a..!...", &["6:a"]);
        // Nobody heard from: nobody dies.
        check("....", &[]);
    }
}
