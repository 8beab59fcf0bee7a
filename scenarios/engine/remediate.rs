//! The remediation: the fewest roots to remove so a store's CA list fits a
//! budget (the fix that worked in the incident: 355 roots cut to about 85).
//! Pure, no I/O.

use certgen::Store;
use serde::Serialize;

/// The fewest roots to remove so the list fits a budget, never removing the
/// roots that must stay: the largest subjects go first, which minimises the
/// count (any k removals free at most the k largest sizes).
#[derive(Clone, Debug, Serialize)]
pub struct Remediation {
    /// Budget in bytes of names.
    pub budget: usize,
    /// Store indices to remove, largest subject first.
    pub remove: Vec<usize>,
    /// List bytes after removal.
    pub list_bytes_after: usize,
    /// Whether the list fits after removal (false when the kept roots alone
    /// exceed the budget).
    pub fits: bool,
}

impl Remediation {
    /// The store without the removed roots, order kept.
    pub fn keep_store(&self, store: &Store) -> Store {
        Store::from_roots(
            store
                .roots()
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.remove.contains(i))
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }
}

/// Computes the remediation for a store; `keep` are store indices that must
/// stay (the client's issuer, CAs the organisation needs).
pub fn remediate(store: &Store, budget: usize, keep: &[usize]) -> Remediation {
    let mut total = store.ca_list_bytes();
    let mut candidates: Vec<(usize, usize)> = store
        .roots()
        .iter()
        .enumerate()
        .filter(|(i, _)| !keep.contains(i))
        .map(|(i, r)| (2 + r.subject_der().len(), i))
        .collect();
    candidates.sort_by(|a, b| b.cmp(a));
    let mut remove = Vec::new();
    for (cost, i) in candidates {
        if total <= budget {
            break;
        }
        total -= cost;
        remove.push(i);
    }
    Remediation {
        budget,
        remove,
        list_bytes_after: total,
        fits: total <= budget,
    }
}
