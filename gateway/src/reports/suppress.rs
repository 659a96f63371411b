//! Small-count suppression for exported breakdowns, as NHS England's statistics do it: a count
//! from `min` to `max` (default 1 to 7) is shown as `*`, and so is any other cell that would let
//! a suppressed one be worked out by subtraction from the published total. The headline totals
//! themselves stay exact.
//!
//! A reader sees `*` without knowing why a cell is hidden, so the hidden cells of a column with
//! a known total can be worked out only when exactly one of them is hidden: with two or more,
//! each can take at least two values that fit the total (checked by brute force in the tests).
//! So a column never keeps exactly one `*`: the smallest shown cell (zeros first) is hidden with it.

use serde::Serialize;

/// The rule printed on every export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SuppressionRule {
    pub min: u64,
    pub max: u64,
}

impl Default for SuppressionRule {
    fn default() -> Self {
        Self { min: 1, max: 7 }
    }
}

impl SuppressionRule {
    /// "Counts from 1 to 7 are shown as *, and so is any cell from which one could be worked out."
    pub fn describe(&self) -> String {
        if self.max < self.min {
            "No counts are suppressed.".to_owned()
        } else {
            format!(
                "Counts from {} to {} are shown as *, and so is any other cell from which a hidden count could be worked out by subtraction; totals are exact.",
                self.min, self.max
            )
        }
    }

    pub fn is_small(&self, count: u64) -> bool {
        self.min <= count && count <= self.max
    }
}

/// Which cells of one column to hide. With `total` (the column adds up to a published figure)
/// a lone hidden cell gets a companion; without, only the small counts are hidden.
pub fn suppress_column(values: &[u64], total: Option<u64>, rule: SuppressionRule) -> Vec<bool> {
    let mut hidden: Vec<bool> = values.iter().map(|&v| rule.is_small(v)).collect();
    let additive = total.is_some_and(|total| values.iter().sum::<u64>() == total);
    if additive && hidden.iter().filter(|h| **h).count() == 1 {
        let companion = values
            .iter()
            .enumerate()
            .filter(|(i, _)| !hidden.get(*i).copied().unwrap_or(true))
            .min_by_key(|(_, v)| **v)
            .map(|(i, _)| i);
        if let Some(cell) = companion.and_then(|i| hidden.get_mut(i)) {
            *cell = true;
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: SuppressionRule = SuppressionRule { min: 1, max: 7 };

    fn hide(values: &[u64]) -> Vec<bool> {
        suppress_column(values, Some(values.iter().sum()), RULE)
    }

    /// Every assignment of values a reader cannot rule out (shown cells as shown, `*` any
    /// value, at least one `*` inside the rule, the total exact): each hidden cell must keep at
    /// least two possible values.
    fn brute_force_safe(values: &[u64], hidden: &[bool]) -> bool {
        let total: u64 = values.iter().sum();
        let positions: Vec<usize> = (0..values.len()).filter(|i| hidden[*i]).collect();
        let rest = total
            - values
                .iter()
                .zip(hidden)
                .filter(|(_, h)| !**h)
                .map(|(v, _)| v)
                .sum::<u64>();
        let mut seen: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); positions.len()];
        let mut candidate = vec![0u64; positions.len()];
        fn walk(k: usize, left: u64, candidate: &mut Vec<u64>, seen: &mut Vec<std::collections::BTreeSet<u64>>) {
            if k == candidate.len() {
                if left == 0 && candidate.iter().any(|v| RULE.is_small(*v)) {
                    for (i, v) in candidate.iter().enumerate() {
                        seen[i].insert(*v);
                    }
                }
                return;
            }
            for x in 0..=left {
                candidate[k] = x;
                walk(k + 1, left - x, candidate, seen);
            }
        }
        walk(0, rest, &mut candidate, &mut seen);
        seen.iter().all(|values| values.len() >= 2)
    }

    #[test]
    fn nothing_small_nothing_hidden() {
        assert_eq!(hide(&[0, 8, 100]), vec![false, false, false]);
    }

    #[test]
    fn one_small_cell_takes_the_smallest_other_with_it() {
        // 3 alone would be total - 50 - 20; hiding 20 as well leaves 23 split two ways.
        assert_eq!(hide(&[3, 50, 20]), vec![true, false, true]);
    }

    #[test]
    fn two_small_cells_protect_each_other() {
        let hidden = hide(&[1, 1, 40, 30]);
        assert_eq!(hidden, vec![true, true, false, false]);
        assert!(brute_force_safe(&[1, 1, 40, 30], &hidden));
    }

    #[test]
    fn a_small_cell_beside_zeros_hides_a_zero() {
        let values = [5, 0, 0];
        let hidden = hide(&values);
        assert!(hidden[0]);
        assert!(brute_force_safe(&values, &hidden), "{hidden:?}");
    }

    #[test]
    fn without_a_total_only_small_counts_are_hidden() {
        assert_eq!(suppress_column(&[3, 50, 20], None, RULE), vec![true, false, false]);
    }

    #[test]
    fn every_small_column_is_safe_by_brute_force() {
        // All columns of 4 cells with values 0..=8: no small count shown, none recoverable.
        for n in 0..9u64.pow(4) {
            let values = [n % 9, n / 9 % 9, n / 81 % 9, n / 729];
            let hidden = hide(&values);
            for (v, h) in values.iter().zip(&hidden) {
                assert!(!RULE.is_small(*v) || *h, "{values:?} shows a small count");
            }
            if hidden.iter().any(|h| *h) {
                assert!(brute_force_safe(&values, &hidden), "{values:?} -> {hidden:?}");
            }
        }
    }

    #[test]
    fn the_rule_describes_itself() {
        assert!(RULE.describe().starts_with("Counts from 1 to 7 are shown as *"));
    }
}
