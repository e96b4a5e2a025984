//! The fetch scheduler's state: which runs of blocks ("units") are wanted, who holds them, who
//! is fetching what. Pure and synchronous; the fetch workers lock it, ask for work
//! and report back.
//!
//! Rules:
//! * Work is pulled: a peer's worker asks for the next unit when it has finished one, so faster
//!   peers get more. Units go in content order, preferring units fewer peers hold.
//! * Endgame: when a peer has no pending unit it holds, it duplicates the oldest unit in flight
//!   at another peer (at most two fetchers per unit); the first to deliver wins.
//! * A peer that fails is retried; after `max_failures` failures in a row, or at once for a bad
//!   block, it is dropped for this transfer and its units go back to the pool.
//! * Units that no live peer holds go to the origin, if there is one.

use std::time::Instant;

use crate::content::{Layout, SegmentIdx};
use crate::store::BlockSet;

/// A run of blocks of one segment, fetched with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// The segment.
    pub seg: SegmentIdx,
    /// First block within the segment.
    pub first: u32,
    /// Number of blocks.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    InFlight { by: Vec<Who>, since: Instant },
    Done,
}

/// Who is fetching: a peer (index into the peer list) or the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A peer, by index.
    Peer(usize),
    /// The HTTP origin.
    Origin,
}

/// What a worker should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Fetch this unit (by index).
    Fetch(usize),
    /// Nothing now; ask again when the state changes.
    Wait,
    /// Nothing more for this worker.
    Exit,
}

#[derive(Debug)]
struct PeerSlot {
    have: Vec<BlockSet>,
    dropped: Option<String>,
    failures: u32,
    /// Busy answers in a row.
    busy: u32,
}

/// Busy answers in a row after which a peer is dropped from the fetch by default (a peer that
/// claims blocks and then only ever says it is busy would otherwise hold its units for ever):
/// with the workers' 200 ms pause between tries, about 10 s of nothing but "busy".
pub const BUSY_LIMIT: u32 = 50;

/// The scheduler's state.
#[derive(Debug)]
pub struct Sched {
    units: Vec<Unit>,
    states: Vec<State>,
    holders: Vec<u32>,
    peers: Vec<PeerSlot>,
    max_failures: u32,
    /// Busy answers in a row after which a peer is dropped.
    max_busy: u32,
    origin: bool,
    origin_failures: u32,
    /// Holdings are asked again during the fetch.
    refreshing: bool,
    /// The unit the origin's work starts from.
    origin_start: usize,
}

impl Sched {
    /// Units covering every block of `layout` not in `present` (per segment), at most
    /// `unit_blocks` blocks each.
    pub fn new(
        layout: &Layout,
        present: &[BlockSet],
        unit_blocks: u32,
        max_failures: u32,
        origin: bool,
    ) -> Sched {
        let mut units = Vec::new();
        for seg in layout.segments() {
            let n = layout.blocks_in_segment(seg);
            let have = &present[seg.get() as usize];
            let mut i = 0;
            while i < n {
                if have.contains(i) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && !have.contains(i) && i - start < unit_blocks {
                    i += 1;
                }
                units.push(Unit {
                    seg,
                    first: start,
                    count: i - start,
                });
            }
        }
        let n = units.len();
        Sched {
            units,
            states: vec![State::Pending; n],
            holders: vec![0; n],
            peers: Vec::new(),
            max_failures,
            max_busy: BUSY_LIMIT,
            origin,
            origin_failures: 0,
            refreshing: false,
            origin_start: 0,
        }
    }

    /// Drops a peer after `n` busy answers in a row (at least one) instead of [`BUSY_LIMIT`].
    pub fn set_max_busy(&mut self, n: u32) {
        self.max_busy = n.max(1);
    }

    /// Where the origin's work starts (a number this node draws, e.g. from its ID), so that
    /// nodes fetching the same content take different units from the origin.
    pub fn set_origin_start(&mut self, start: usize) {
        self.origin_start = start;
    }

    /// Adds a peer with what it holds (one set per segment); returns its index.
    pub fn add_peer(&mut self, have: Vec<BlockSet>) -> usize {
        let p = self.peers.len();
        self.peers.push(PeerSlot {
            have,
            dropped: None,
            failures: 0,
            busy: 0,
        });
        for u in 0..self.units.len() {
            if self.holds(p, u) {
                self.holders[u] += 1;
            }
        }
        p
    }

    /// Peer `p` holds `have` now (asked again while the fetch runs: peers that are fetching
    /// the same content hold more and more of it). A peer that held nothing keeps its workers
    /// waiting for this rather than exiting.
    pub fn update_peer(&mut self, p: usize, have: Vec<BlockSet>) {
        self.refreshing = true;
        let before: Vec<bool> = (0..self.units.len())
            .map(|u| self.live_holds(p, u))
            .collect();
        self.peers[p].have = have;
        // Only this peer's part of each unit's count changes.
        for (u, had) in before.into_iter().enumerate() {
            match (had, self.live_holds(p, u)) {
                (false, true) => self.holders[u] += 1,
                (true, false) => self.holders[u] -= 1,
                _ => {}
            }
        }
    }

    /// Holdings are asked again while the fetch runs ([`Sched::update_peer`]): workers of
    /// peers that hold nothing left wait instead of exiting.
    pub fn set_refreshing(&mut self) {
        self.refreshing = true;
    }

    /// After every peer is added: splits units that no single peer holds whole, but several
    /// do together, at the boundaries of what each holds (greedily: each piece is the longest
    /// run some one peer holds), so that partial holders (peers still fetching) are used.
    pub fn split_for_partial_holders(&mut self) {
        let mut units = Vec::with_capacity(self.units.len());
        for (u, unit) in self.units.iter().enumerate() {
            if self.holders[u] > 0 || self.states[u] != State::Pending {
                units.push(*unit);
                continue;
            }
            let holds_block = |p: &PeerSlot, i: u32| {
                p.dropped.is_none()
                    && p.have
                        .get(unit.seg.get() as usize)
                        .is_some_and(|s| s.contains(i))
            };
            let mut start = unit.first;
            let end = unit.first + unit.count;
            while start < end {
                // The longest run from `start` that one peer holds (at least one block, even
                // if nobody holds it: the origin takes such pieces).
                let best = self
                    .peers
                    .iter()
                    .map(|p| (start..end).take_while(|&i| holds_block(p, i)).count() as u32)
                    .max()
                    .unwrap_or(0);
                let len = if best == 0 {
                    // Nobody holds `start`: the run of blocks nobody holds.
                    ((start..end)
                        .take_while(|&i| !self.peers.iter().any(|p| holds_block(p, i)))
                        .count() as u32)
                        .max(1)
                } else {
                    best
                };
                units.push(Unit {
                    seg: unit.seg,
                    first: start,
                    count: len,
                });
                start += len;
            }
        }
        if units.len() == self.units.len() {
            return;
        }
        let n = units.len();
        self.units = units;
        self.states = vec![State::Pending; n];
        self.holders = (0..n)
            .map(|u| {
                (0..self.peers.len())
                    .filter(|&p| self.live_holds(p, u))
                    .count() as u32
            })
            .collect();
    }

    /// The unit with index `u`.
    pub fn unit(&self, u: usize) -> Unit {
        self.units[u]
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether there are no units (everything was present).
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    fn holds(&self, p: usize, u: usize) -> bool {
        let unit = self.units[u];
        let Some(set) = self.peers[p].have.get(unit.seg.get() as usize) else {
            return false;
        };
        (unit.first..unit.first + unit.count).all(|i| set.contains(i))
    }

    fn live_holds(&self, p: usize, u: usize) -> bool {
        self.peers[p].dropped.is_none() && self.holds(p, u)
    }

    /// Whether every unit is done.
    pub fn finished(&self) -> bool {
        self.states.iter().all(|s| *s == State::Done)
    }

    /// Whether unit `u` is done.
    pub fn is_done(&self, u: usize) -> bool {
        self.states[u] == State::Done
    }

    /// Next work for peer `p`.
    pub fn next_for_peer(&mut self, p: usize, now: Instant) -> Next {
        if self.peers[p].dropped.is_some() {
            return Next::Exit;
        }
        // Pending units this peer holds: rarest first, then in content order.
        let pick = (0..self.units.len())
            .filter(|&u| self.states[u] == State::Pending && self.holds(p, u))
            .min_by_key(|&u| (self.holders[u], u));
        if let Some(u) = pick {
            self.states[u] = State::InFlight {
                by: vec![Who::Peer(p)],
                since: now,
            };
            return Next::Fetch(u);
        }
        // Endgame: help with the oldest unit in flight elsewhere.
        let steal = (0..self.units.len())
            .filter(|&u| self.holds(p, u))
            .filter_map(|u| match &self.states[u] {
                State::InFlight { by, since } if by.len() < 2 && !by.contains(&Who::Peer(p)) => {
                    Some((*since, u))
                }
                _ => None,
            })
            .min();
        if let Some((_, u)) = steal {
            if let State::InFlight { by, .. } = &mut self.states[u] {
                by.push(Who::Peer(p));
            }
            return Next::Fetch(u);
        }
        let any_left =
            (0..self.units.len()).any(|u| self.states[u] != State::Done && self.holds(p, u));
        if any_left || (self.refreshing && !self.finished()) {
            Next::Wait
        } else {
            Next::Exit
        }
    }

    /// Next work for the origin: pending units no live peer holds.
    pub fn next_for_origin(&mut self, now: Instant) -> Next {
        if !self.origin {
            return Next::Exit;
        }
        // From this node's own starting point: nodes fetching the same content at once take
        // different units from the origin, and then from each other.
        let n = self.units.len();
        let start = self.origin_start % n.max(1);
        let pick = (start..n).chain(0..start).find(|&u| {
            self.states[u] == State::Pending
                && !(0..self.peers.len()).any(|p| self.live_holds(p, u))
        });
        if let Some(u) = pick {
            self.states[u] = State::InFlight {
                by: vec![Who::Origin],
                since: now,
            };
            return Next::Fetch(u);
        }
        if self.finished() {
            Next::Exit
        } else {
            Next::Wait
        }
    }

    /// `who` delivered unit `u` (stored). Returns false if someone else already had.
    pub fn done(&mut self, u: usize, who: Who) -> bool {
        match who {
            Who::Peer(p) => {
                self.peers[p].failures = 0;
                self.peers[p].busy = 0;
            }
            Who::Origin => self.origin_failures = 0,
        }
        if self.states[u] == State::Done {
            return false;
        }
        self.states[u] = State::Done;
        true
    }

    /// `who` did not deliver unit `u`; `blame` says whether that counts against it (a transport
    /// failure does; "I no longer have it" does not, but then it no longer holds the unit).
    /// Returns the reason if the peer is now dropped.
    pub fn failed(&mut self, u: usize, who: Who, blame: bool) -> Option<String> {
        self.release(u, who);
        match who {
            Who::Peer(p) if blame => {
                self.peers[p].failures += 1;
                if self.peers[p].failures >= self.max_failures {
                    let why = format!("{} failed requests in a row", self.peers[p].failures);
                    return self.drop_peer(p, why.clone()).then_some(why);
                }
            }
            Who::Peer(p) => self.forget(p, u),
            Who::Origin => self.origin_failures += 1,
        }
        None
    }

    /// `who` was too busy to take unit `u` (a peer serving its limit of streams): the unit goes
    /// back to the pool. It counts against the peer only after [`BUSY_LIMIT`] (or the number
    /// [`Sched::set_max_busy`] set) such answers in a row, when it is dropped; returns the
    /// reason then.
    pub fn busy(&mut self, u: usize, who: Who) -> Option<String> {
        self.release(u, who);
        let Who::Peer(p) = who else { return None };
        self.peers[p].busy += 1;
        if self.peers[p].busy < self.max_busy {
            return None;
        }
        let why = format!("busy for {} answers in a row", self.peers[p].busy);
        self.drop_peer(p, why.clone()).then_some(why)
    }

    /// Failures of the origin in a row.
    pub fn origin_failures(&self) -> u32 {
        self.origin_failures
    }

    /// Peer `p` lost the blocks of unit `u` (it said so, or sent a block that did not verify).
    fn forget(&mut self, p: usize, u: usize) {
        if !self.holds(p, u) {
            return;
        }
        let unit = self.units[u];
        let set = &mut self.peers[p].have[unit.seg.get() as usize];
        for i in unit.first..unit.first + unit.count {
            set.remove(i);
        }
        self.holders[u] -= 1;
    }

    fn release(&mut self, u: usize, who: Who) {
        if let State::InFlight { by, .. } = &mut self.states[u] {
            by.retain(|w| *w != who);
            if by.is_empty() {
                self.states[u] = State::Pending;
            }
        }
    }

    /// Drops peer `p` for this transfer; its units in flight go back to the pool. Returns
    /// false if it was dropped already.
    pub fn drop_peer(&mut self, p: usize, why: String) -> bool {
        if self.peers[p].dropped.is_some() {
            return false;
        }
        for u in 0..self.units.len() {
            if self.holds(p, u) {
                self.holders[u] -= 1;
            }
            self.release(u, Who::Peer(p));
        }
        self.peers[p].dropped = Some(why);
        true
    }

    /// Segments with blocks not yet fetched that no live peer holds.
    pub fn unheld_segments(&self) -> Vec<u32> {
        let mut segs: Vec<u32> = (0..self.units.len())
            .filter(|&u| self.states[u] != State::Done)
            .filter(|&u| !(0..self.peers.len()).any(|p| self.live_holds(p, u)))
            .map(|u| self.units[u].seg.get())
            .collect();
        segs.dedup();
        segs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(layout: &Layout) -> Vec<BlockSet> {
        layout
            .segments()
            .map(|s| BlockSet::full(layout.blocks_in_segment(s)))
            .collect()
    }

    fn empty(layout: &Layout) -> Vec<BlockSet> {
        layout
            .segments()
            .map(|s| BlockSet::new(layout.blocks_in_segment(s)))
            .collect()
    }

    #[test]
    fn units_cover_only_missing_blocks() {
        let l = Layout::new(40 * 65_536 + 5).unwrap();
        let mut present = empty(&l);
        present[0].insert(3);
        let s = Sched::new(&l, &present, 16, 3, false);
        let blocks: u32 = (0..s.len()).map(|u| s.unit(u).count).sum();
        assert_eq!(blocks, 41 - 1);
        assert_eq!(
            s.unit(0),
            Unit {
                seg: l.segment(0).unwrap(),
                first: 0,
                count: 3
            }
        );
        assert!((0..s.len()).all(|u| s.unit(u).count <= 16));
    }

    #[test]
    fn pull_endgame_failure_and_origin() {
        let l = Layout::new(2 * 16 * 65_536).unwrap();
        let mut s = Sched::new(&l, &empty(&l), 16, 2, true);
        let t = Instant::now();
        let a = s.add_peer(full(&l));
        let b = s.add_peer(full(&l));
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(0));
        assert_eq!(s.next_for_peer(b, t), Next::Fetch(1));
        // Nothing pending: a duplicates b's unit, then waits.
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(1));
        assert_eq!(s.next_for_peer(a, t), Next::Wait);
        assert!(s.done(1, Who::Peer(a)));
        assert!(!s.done(1, Who::Peer(b)), "the duplicate loses");
        // b fails unit 0's retry twice: dropped; the origin gets nothing while a holds it.
        assert_eq!(s.failed(0, Who::Peer(a), true), None);
        assert_eq!(s.next_for_origin(t), Next::Wait);
        assert_eq!(s.next_for_peer(b, t), Next::Fetch(0));
        assert_eq!(s.failed(0, Who::Peer(b), true), None);
        assert!(s.drop_peer(a, "bad block".into()));
        assert!(!s.drop_peer(a, "again".into()));
        assert_eq!(s.next_for_peer(a, t), Next::Exit);
        assert_eq!(s.next_for_peer(b, t), Next::Fetch(0));
        assert!(
            s.failed(0, Who::Peer(b), true).is_some(),
            "second failure in a row"
        );
        assert_eq!(s.unheld_segments(), vec![0]);
        assert_eq!(s.next_for_origin(t), Next::Fetch(0));
        assert!(s.done(0, Who::Origin));
        assert!(s.finished());
        assert_eq!(s.next_for_origin(t), Next::Exit);
    }

    #[test]
    fn a_busy_peer_keeps_its_units_for_a_while_and_not_for_ever() {
        let l = Layout::new(2 * 16 * 65_536).unwrap();
        let mut s = Sched::new(&l, &empty(&l), 16, 2, true);
        let t = Instant::now();
        let a = s.add_peer(full(&l));
        for _ in 0..5 {
            assert_eq!(s.next_for_peer(a, t), Next::Fetch(0));
            assert_eq!(s.busy(0, Who::Peer(a)), None);
        }
        // Still held by a: not the origin's.
        assert_eq!(s.next_for_origin(t), Next::Wait);
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(0));
        assert!(s.done(0, Who::Peer(a)));
        // Busy answers count in a row only: a delivery starts the count again.
        for i in 1..BUSY_LIMIT {
            assert_eq!(s.next_for_peer(a, t), Next::Fetch(1));
            assert_eq!(s.busy(1, Who::Peer(a)), None, "answer {i}");
        }
        assert_eq!(s.next_for_origin(t), Next::Wait);
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(1));
        let why = s.busy(1, Who::Peer(a)).expect("dropped");
        assert!(why.contains("busy for 50 answers"), "{why}");
        // Its units go to the origin, and it gets no more work.
        assert_eq!(s.next_for_origin(t), Next::Fetch(1));
        assert_eq!(s.next_for_peer(a, t), Next::Exit);
        assert!(s.done(1, Who::Origin));
        assert!(s.finished());
    }

    #[test]
    fn holdings_asked_again_bring_new_work_and_keep_empty_peers_waiting() {
        let l = Layout::new(2 * 16 * 65_536).unwrap();
        let mut s = Sched::new(&l, &empty(&l), 16, 2, true);
        let t = Instant::now();
        let a = s.add_peer(empty(&l));
        s.set_refreshing();
        // a holds nothing yet: it waits (it would exit without refreshing); the origin works.
        assert_eq!(s.next_for_peer(a, t), Next::Wait);
        assert_eq!(s.next_for_origin(t), Next::Fetch(0));
        // a now holds everything: unit 1 is a's (rarest first), not the origin's.
        s.update_peer(a, full(&l));
        assert_eq!(s.next_for_origin(t), Next::Wait);
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(1));
        assert!(s.done(1, Who::Peer(a)));
        assert!(s.done(0, Who::Origin));
        assert_eq!(s.next_for_peer(a, t), Next::Exit);
    }

    #[test]
    fn units_split_where_peers_hold_parts() {
        let l = Layout::new(2 * 512 * 65_536).unwrap();
        let mut s = Sched::new(&l, &empty(&l), 16, 3, false);
        // a holds blocks 0..600, b holds 600..1024: unit 37 (blocks 592..608) is whole at
        // neither.
        let mut a = empty(&l);
        let mut b = empty(&l);
        for g in 0..1024u32 {
            let (seg, i) = ((g / 512) as usize, g % 512);
            if g < 600 {
                a[seg].insert(i);
            } else {
                b[seg].insert(i);
            }
        }
        let (pa, pb) = (s.add_peer(a), s.add_peer(b));
        assert!(!s.unheld_segments().is_empty());
        s.split_for_partial_holders();
        assert!(s.unheld_segments().is_empty(), "{:?}", s.unheld_segments());
        assert_eq!(s.len(), 65);
        let t = Instant::now();
        let mut fetched = 0;
        while !s.finished() {
            for p in [pa, pb] {
                if let Next::Fetch(u) = s.next_for_peer(p, t) {
                    fetched += s.unit(u).count;
                    assert!(s.done(u, Who::Peer(p)));
                }
            }
        }
        assert_eq!(fetched, 1024);
    }

    #[test]
    fn a_peer_that_lost_blocks_is_not_asked_again() {
        let l = Layout::new(16 * 65_536).unwrap();
        let mut s = Sched::new(&l, &empty(&l), 16, 3, false);
        let t = Instant::now();
        let a = s.add_peer(full(&l));
        assert_eq!(s.next_for_peer(a, t), Next::Fetch(0));
        assert_eq!(s.failed(0, Who::Peer(a), false), None);
        assert_eq!(s.next_for_peer(a, t), Next::Exit);
        assert_eq!(s.unheld_segments(), vec![0]);
    }
}
