//! Break-point search: the smallest failing store size of a monotone setup,
//! by bisection on measurements (each probe is a real TCP + TLS run).

use serde::Serialize;

use super::{Lab, Point};
use crate::model::Resolved;

/// The smallest failing size in `from..=to`, by bisection on measurements,
/// with the two stores either side measured.
#[derive(Clone, Debug, Serialize)]
pub struct BreakPoint {
    /// Smallest size that fails.
    pub size: usize,
    /// The largest delivering store.
    pub below: Point,
    /// The smallest failing store.
    pub at: Point,
    /// Stores measured by the search.
    pub probes: usize,
}

/// Searches the break point of a monotone setup. `Ok(Err(why))` when the
/// range does not bracket one (`from` already fails, or `to` still delivers).
pub async fn break_point(
    lab: &mut Lab,
    r: &Resolved,
    from: usize,
    to: usize,
    seed: u64,
) -> crate::Result<Result<BreakPoint, String>> {
    if from >= to {
        return Ok(Err(format!("from ({from}) must be below to ({to})")));
    }
    let mut probes = 2;
    let low = lab.point(r, from, seed).await?;
    if low.measured.failed() {
        return Ok(Err(format!("already fails at {from} roots")));
    }
    let high = lab.point(r, to, seed).await?;
    if !high.measured.failed() {
        return Ok(Err(format!("still delivers at {to} roots")));
    }
    let (mut lo, mut hi) = ((from, low), (to, high));
    while hi.0 - lo.0 > 1 {
        let mid = lo.0 + (hi.0 - lo.0) / 2;
        probes += 1;
        let p = lab.point(r, mid, seed).await?;
        if p.measured.failed() {
            hi = (mid, p);
        } else {
            lo = (mid, p);
        }
    }
    Ok(Ok(BreakPoint {
        size: hi.0,
        below: lo.1,
        at: hi.1,
        probes,
    }))
}
