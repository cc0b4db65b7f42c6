//! A cyclic tour stored as an array plus a position index, with an undo journal.
//!
//! Every change is a reversal of a cyclic range of positions, which is its own inverse, so the
//! iterated local search can record the reversals made since a perturbation and replay them
//! backwards to restore the tour when the perturbation did not pay off (cost: the work already
//! done, never `O(n)` copies). Arrays with a position index beat linked or two-level lists up to
//! the 2 000 stops we accept: a 2-opt move reverses the shorter side, about `√n` elements on
//! average once the tour is good.

/// Node order around the cycle and each node's position in it.
#[derive(Debug, Clone)]
pub(crate) struct Tour {
    order: Vec<u32>,
    pos: Vec<u32>,
    /// Reversals `(start, len)` since the last [`Tour::commit`], when recording.
    journal: Vec<(u32, u32)>,
    recording: bool,
}

impl Tour {
    /// The cycle visiting `order` (a permutation of `0..order.len()`).
    pub(crate) fn new(order: &[usize]) -> Self {
        let mut pos = vec![0u32; order.len()];
        for (i, &v) in order.iter().enumerate() {
            pos[v] = i as u32;
        }
        Self {
            order: order.iter().map(|&v| v as u32).collect(),
            pos,
            journal: Vec::new(),
            recording: false,
        }
    }

    /// Number of nodes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Node at position `i` (taken modulo the length).
    #[inline]
    pub(crate) fn at(&self, i: usize) -> usize {
        let n = self.order.len();
        // Callers pass positions below `2n` almost always; a division is ten times a compare.
        let i = if i < n {
            i
        } else if i < 2 * n {
            i - n
        } else {
            i % n
        };
        self.order[i] as usize
    }

    /// Position of node `v`.
    #[inline]
    pub(crate) fn pos(&self, v: usize) -> usize {
        self.pos[v] as usize
    }

    /// The node after `v`.
    #[inline]
    pub(crate) fn succ(&self, v: usize) -> usize {
        let i = self.pos[v] as usize + 1;
        if i == self.order.len() {
            self.order[0] as usize
        } else {
            self.order[i] as usize
        }
    }

    /// The node before `v`.
    #[inline]
    pub(crate) fn pred(&self, v: usize) -> usize {
        let i = self.pos[v] as usize;
        if i == 0 {
            self.order[self.order.len() - 1] as usize
        } else {
            self.order[i - 1] as usize
        }
    }

    /// Number of nodes on the path from `a` to `b` following successors, both included.
    #[inline]
    pub(crate) fn span(&self, a: usize, b: usize) -> usize {
        let (pa, pb) = (self.pos(a), self.pos(b));
        if pb >= pa {
            pb - pa + 1
        } else {
            pb + self.order.len() - pa + 1
        }
    }

    /// The nodes in cycle order starting at position 0.
    pub(crate) fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|&v| v as usize)
    }

    /// Reverses the `len` nodes at cyclic positions `start, start + 1, ...`.
    pub(crate) fn reverse(&mut self, start: usize, len: usize) {
        let n = self.order.len();
        if len < 2 {
            return;
        }
        if self.recording {
            self.journal.push((start as u32, len as u32));
        }
        let (mut i, mut j) = (start % n, (start + len - 1) % n);
        for _ in 0..len / 2 {
            self.order.swap(i, j);
            self.pos[self.order[i] as usize] = i as u32;
            self.pos[self.order[j] as usize] = j as u32;
            i = if i + 1 == n { 0 } else { i + 1 };
            j = if j == 0 { n - 1 } else { j - 1 };
        }
    }

    /// Reverses the path from `a` to `b` (following successors).
    pub(crate) fn reverse_path(&mut self, a: usize, b: usize) {
        self.reverse(self.pos(a), self.span(a, b));
    }

    /// Moves the path `s1..=s_last` (following successors) so that it sits between `c` and
    /// `succ(c)`, reversed if asked. `c` must lie outside the path. Shifts whichever side of the
    /// cycle is shorter, so the cost is `O(min(gap))`.
    pub(crate) fn move_segment(&mut self, s1: usize, s_last: usize, c: usize, reversed: bool) {
        let n = self.order.len();
        let len = self.span(s1, s_last);
        let gap_after = self.span(self.succ(s_last), c);
        let gap_before = n - len - gap_after;
        if gap_after <= gap_before {
            // S G -> G S: reverse both, then each part.
            let start = self.pos(s1);
            self.reverse(start, len + gap_after);
            self.reverse(start, gap_after);
            if !reversed {
                self.reverse(start + gap_after, len);
            }
        } else {
            // G' S -> S G', where G' runs from succ(c) to pred(s1).
            let start = self.pos(self.succ(c));
            self.reverse(start, gap_before + len);
            self.reverse(start + len, gap_before);
            if !reversed {
                self.reverse(start, len);
            }
        }
    }

    /// Swaps the adjacent paths `a1..=a_last` and `succ(a_last)..=b_last`: the double bridge
    /// and the Or-3opt segment exchange. With `R` the rest of the cycle, `A B R`, `B A R`... all
    /// three pairwise swaps give the same cycle, so the cheapest pair is swapped: `O(n/3)` at
    /// worst. `R` must not be empty.
    pub(crate) fn swap_adjacent(&mut self, a1: usize, a_last: usize, b_last: usize) {
        let la = self.span(a1, a_last);
        let b1 = self.succ(a_last);
        let lb = self.span(b1, b_last);
        let lr = self.len() - la - lb;
        let r1 = self.succ(b_last);
        let (first, l1, l2) = if la + lb <= lb + lr && la + lb <= lr + la {
            (a1, la, lb)
        } else if lb + lr <= lr + la {
            (b1, lb, lr)
        } else {
            (r1, lr, la)
        };
        debug_assert!(lr > 0, "the rest of the cycle must not be empty");
        let start = self.pos(first);
        self.reverse(start, l1 + l2);
        self.reverse(start, l2);
        self.reverse(start + l2, l1);
    }

    /// Starts (or restarts) recording reversals for [`Tour::undo`].
    pub(crate) fn record(&mut self) {
        self.journal.clear();
        self.recording = true;
    }

    /// Keeps every change since [`Tour::record`].
    pub(crate) fn commit(&mut self) {
        self.journal.clear();
    }

    /// Reverts every change since [`Tour::record`] or the last [`Tour::commit`].
    pub(crate) fn undo(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        let was = std::mem::replace(&mut self.recording, false);
        for &(start, len) in journal.iter().rev() {
            self.reverse(start as usize, len as usize);
        }
        self.recording = was;
        self.journal = journal;
        self.journal.clear();
    }

    /// True when something was changed since recording started or was last committed.
    #[cfg(test)]
    pub(crate) fn has_changes(&self) -> bool {
        !self.journal.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(t: &Tour) -> Vec<usize> {
        t.order().collect()
    }

    fn consistent(t: &Tour) -> bool {
        (0..t.len()).all(|v| t.at(t.pos(v)) == v)
    }

    #[test]
    fn positions_and_spans_wrap_like_modular_arithmetic() {
        let order = [3, 0, 6, 1, 5, 2, 4];
        let t = Tour::new(&order);
        let n = order.len();
        for i in 0..5 * n {
            assert_eq!(t.at(i), order[i % n], "at({i})");
        }
        for a in 0..n {
            for b in 0..n {
                let want = (t.pos(b) + n - t.pos(a)) % n + 1;
                assert_eq!(t.span(a, b), want, "span({a}, {b})");
            }
        }
    }

    #[test]
    fn reverse_wraps_around_the_end_of_the_array() {
        let mut t = Tour::new(&[0, 1, 2, 3, 4, 5]);
        t.reverse(4, 4); // positions 4,5,0,1 hold 4,5,0,1 -> 1,0,5,4
        assert_eq!(nodes(&t), vec![5, 4, 2, 3, 1, 0]);
        assert!(consistent(&t));
        assert_eq!(t.succ(0), 5);
        assert_eq!(t.pred(5), 0);
    }

    #[test]
    fn move_segment_inserts_after_the_target_on_either_side() {
        for (c, reversed, want) in [
            (5, false, vec![0, 3, 4, 5, 1, 2, 6, 7]),
            (5, true, vec![0, 3, 4, 5, 2, 1, 6, 7]),
            (6, false, vec![0, 3, 4, 5, 6, 1, 2, 7]),
            (7, true, vec![0, 3, 4, 5, 6, 7, 2, 1]),
        ] {
            let mut t = Tour::new(&[0, 1, 2, 3, 4, 5, 6, 7]);
            t.move_segment(1, 2, c, reversed);
            assert!(consistent(&t));
            // Compare as cycles starting at node 0.
            let start = t.pos(0);
            let got: Vec<usize> = (0..8).map(|k| t.at(start + k)).collect();
            assert_eq!(got, want, "c={c} reversed={reversed}");
        }
    }

    fn from_zero(t: &Tour) -> Vec<usize> {
        (0..t.len()).map(|k| t.at(t.pos(0) + k)).collect()
    }

    #[test]
    fn swap_adjacent_is_a_double_bridge_whichever_pair_it_moves() {
        // A = 1..=2, B = 3..=5, R = 6..=9 and 0: each case has a different cheapest pair.
        for (a1, a_last, b_last, want) in [
            (1, 2, 5, vec![0, 3, 4, 5, 1, 2, 6, 7, 8, 9]),
            (1, 6, 7, vec![0, 7, 1, 2, 3, 4, 5, 6, 8, 9]),
            (2, 2, 8, vec![0, 1, 3, 4, 5, 6, 7, 8, 2, 9]),
        ] {
            let mut t = Tour::new(&(0..10).collect::<Vec<_>>());
            t.swap_adjacent(a1, a_last, b_last);
            assert_eq!(from_zero(&t), want);
            assert!(consistent(&t));
        }
    }

    #[test]
    fn undo_restores_the_tour_after_many_changes() {
        let start = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut t = Tour::new(&start);
        t.record();
        t.reverse(7, 6);
        t.move_segment(3, 4, 8, true);
        let (a1, a_last, b_last) = (t.at(1), t.at(2), t.at(5));
        t.swap_adjacent(a1, a_last, b_last);
        assert!(t.has_changes());
        t.undo();
        assert_eq!(nodes(&t), start.to_vec());
        assert!(consistent(&t));
        assert!(!t.has_changes());
    }
}
