//! Exact odds of the thumbprint lottery, and the statistics that set a
//! Monte Carlo measurement beside them. Pure: no I/O.
//!
//! A Schannel Hub that enumerates its store by thumbprint sends the names in
//! ascending SHA-1 order and keeps them while the list fits its budget `B`
//! (bytes of `2 + DER length` per name). The enterprise CA (entry size `c`)
//! is listed exactly when the entries before it, plus its own, fit:
//! `S + c <= B`, where `S` is the total size of the names that precede it.
//!
//! Thumbprints are uniformly random, so the order of the `n` names is a
//! uniformly random permutation: the CA's place is uniform on `0..n`, and
//! given place `j` the names before it are a uniformly random `j`-subset of
//! the other `m = n - 1`. So, with `T = B - c`,
//!
//! ```text
//! P(fail) = 1 - (1/n) * sum_{j=0}^{m} P(sum of a random j-subset <= T)
//! ```
//!
//! [`store_curve`] computes this for a given store (the sizes of the other
//! names known) by dynamic programming over the number `j` and total size `s`
//! of a subset: `p_i[j][s]`, the probability that a uniformly random
//! `j`-subset of the first `i` names sums to exactly `s`, obeys
//! `p_i[j][s] = (i-j)/i * p_{i-1}[j][s] + j/i * p_{i-1}[j-1][s - w_i]`
//! (name `i` is out of the subset with probability `(i-j)/i`, in with `j/i`),
//! a convex combination, so no count overflows and no rounding grows. Sizes
//! above `T` are never stored: they all fail. One pass over the names gives
//! the odds of every prefix of the store, which for a fixed list (Microsoft's
//! program, in its order) is the distribution of the break point.
//!
//! [`profile_curve`] computes the odds for a store whose other names are drawn
//! independently from a known size distribution (certgen's synthetic
//! profiles): a random `j`-subset is then `j` independent draws, whose sum's
//! distribution is the `j`-th convolution power.
//!
//! Both are exact up to floating-point rounding (about 1e-12 here); the tests
//! compare them with every order of small stores, planned by lab-server's own
//! policy.

/// z of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The probability, for every store size `n` in `0..=others.len() + 1`, that
/// the CA is cut: index `n` is the store of the first `n - 1` entries of
/// `others` plus the CA (index 0 is 0, no store). `others` are the entry
/// sizes (`2 + DER length`) of the other names in store order, `ca` the CA's,
/// `budget` the list budget in bytes.
pub fn store_curve(others: &[usize], ca: usize, budget: usize) -> Vec<f64> {
    let m = others.len();
    let mut curve = vec![0.0; m + 2];
    let Some(t) = budget.checked_sub(ca) else {
        // The CA alone does not fit: it is never listed.
        curve.iter_mut().skip(1).for_each(|p| *p = 1.0);
        return curve;
    };
    // Bounds over all names: a j-subset sums to at least the j smallest and
    // at most the j largest; rows past `rows` never hold mass at or below t.
    let mut sorted = others.to_vec();
    sorted.sort_unstable();
    let mut low = vec![0usize];
    for w in &sorted {
        low.push(low.last().copied().unwrap_or(0).saturating_add(*w));
    }
    let mut high = vec![0usize];
    for w in sorted.iter().rev() {
        high.push(high.last().copied().unwrap_or(0).saturating_add(*w));
    }
    let rows = low.iter().take_while(|&&s| s <= t).count(); // j = 0..rows
    let width = t + 1;
    let mut p = vec![0.0f64; rows * width];
    if let Some(first) = p.first_mut() {
        *first = 1.0;
    }
    // mass[j]: P(a random j-subset of the names so far sums to <= t).
    let mut mass = vec![0.0f64; rows];
    if let Some(first) = mass.first_mut() {
        *first = 1.0;
    }
    let listed = |mass: &[f64], i: usize| mass.iter().take(i + 1).sum::<f64>() / (i + 1) as f64;
    if let Some(c) = curve.get_mut(1) {
        *c = 1.0 - listed(&mass, 0);
    }
    for (idx, &w) in others.iter().enumerate() {
        let i = idx + 1;
        let inv = 1.0 / i as f64;
        for j in (1..rows.min(i + 1)).rev() {
            let keep = (i - j) as f64 * inv;
            let add = j as f64 * inv;
            let lo = low.get(j).copied().unwrap_or(usize::MAX);
            let hi = high.get(j).copied().unwrap_or(usize::MAX).min(t);
            let (before, row) = p.split_at_mut(j * width);
            let prev = &before[(j - 1) * width..];
            let row = &mut row[..width];
            let mut carried = 0.0;
            for s in lo..=hi {
                let from = if s >= w { prev[s - w] } else { 0.0 };
                carried += from;
                row[s] = keep * row[s] + add * from;
            }
            mass[j] = keep * mass[j] + add * carried;
        }
        if let Some(c) = curve.get_mut(i + 1) {
            *c = (1.0 - listed(&mass, i)).clamp(0.0, 1.0);
        }
    }
    curve
}

/// The probability, for every store size `n` in `0..=max_roots`, that the CA
/// is cut when the other `n - 1` names are drawn independently with entry
/// sizes from `dist` (`(2 + DER length, probability)`), the CA's entry size
/// `ca`, the list budget `budget`. Index 0 is 0 (no store).
pub fn profile_curve(
    dist: &[(usize, f64)],
    ca: usize,
    budget: usize,
    max_roots: usize,
) -> Vec<f64> {
    let mut curve = vec![0.0; max_roots + 1];
    let Some(t) = budget.checked_sub(ca) else {
        curve.iter_mut().skip(1).for_each(|p| *p = 1.0);
        return curve;
    };
    let min_w = dist.iter().map(|(w, _)| *w).min().unwrap_or(0);
    // fits[j] = P(j independent draws sum to <= t), for j = 0..max_roots - 1.
    let mut fits = Vec::with_capacity(max_roots);
    let mut g = vec![0.0f64; t + 1];
    if let Some(z) = g.first_mut() {
        *z = 1.0;
    }
    let (mut lo, mut hi) = (0usize, 0usize); // support of g
    while fits.len() < max_roots {
        let total: f64 = g.get(lo..=hi.min(t)).map_or(0.0, |r| r.iter().sum());
        fits.push(total.clamp(0.0, 1.0));
        if total == 0.0 || min_w == 0 {
            // Nothing fits any more (or a degenerate distribution of zero
            // sizes, which always fits): the rest repeats.
            let last = total.clamp(0.0, 1.0);
            fits.resize(max_roots, last);
            break;
        }
        let mut next = vec![0.0f64; t + 1];
        let (mut nlo, mut nhi) = (usize::MAX, 0usize);
        for &(w, pw) in dist {
            if lo.saturating_add(w) > t {
                continue;
            }
            let top = hi.min(t - w);
            for s in lo..=top {
                next[s + w] += pw * g[s];
            }
            nlo = nlo.min(lo + w);
            nhi = nhi.max(top + w);
        }
        g = next;
        if nlo == usize::MAX {
            lo = t + 1;
            hi = t;
        } else {
            lo = nlo;
            hi = nhi;
        }
    }
    let mut listed_sum = 0.0;
    for n in 1..=max_roots {
        listed_sum += fits.get(n - 1).copied().unwrap_or(0.0);
        if let Some(c) = curve.get_mut(n) {
            *c = (1.0 - listed_sum / n as f64).clamp(0.0, 1.0);
        }
    }
    curve
}

/// The 95% Wilson score interval of `k` successes in `n` trials; `(0, 1)`
/// when `n` is 0. The bound at 0 (k = 0) and at 1 (k = n) is exact, not
/// left to rounding.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, nf) = (k.min(n) as f64, n as f64);
    let z2 = Z95 * Z95;
    let center = (k + z2 / 2.0) / (nf + z2);
    let half = Z95 / (nf + z2) * (k * (nf - k) / nf + z2 / 4.0).sqrt();
    let lo = if k == 0.0 { 0.0 } else { center - half };
    let hi = if k == nf { 1.0 } else { center + half };
    (lo.max(0.0), hi.min(1.0))
}

/// `ln k!` for `k` in `0..=n`.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    let mut acc = 0.0f64;
    out.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// The binomial probabilities `P(X = k)`, `k = 0..=n`, of `X ~ Bin(n, p)`.
pub fn binomial_pmf(n: usize, p: f64) -> Vec<f64> {
    if p <= 0.0 || p >= 1.0 {
        let mut out = vec![0.0; n + 1];
        let at = if p >= 1.0 { n } else { 0 };
        if let Some(x) = out.get_mut(at) {
            *x = 1.0;
        }
        return out;
    }
    let lf = ln_factorials(n);
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    (0..=n)
        .map(|k| (lf[n] - lf[k] - lf[n - k] + k as f64 * lp + (n - k) as f64 * lq).exp())
        .collect()
}

/// The probability that the 95% Wilson interval of `Bin(runs, p)` misses
/// `p`: the exact chance that a sound measurement falls outside its interval.
/// Near 5%, sometimes more (Wilson's coverage oscillates), never assumed.
pub fn miss_probability(p: f64, runs: usize) -> f64 {
    binomial_pmf(runs, p)
        .iter()
        .enumerate()
        .filter(|(k, _)| {
            let (lo, hi) = wilson(*k, runs);
            p < lo || p > hi
        })
        .map(|(_, q)| q)
        .sum()
}

/// The distribution of a sum of independent integer variables, each given by
/// its probabilities over `0..`.
pub fn convolve_all(parts: &[Vec<f64>]) -> Vec<f64> {
    let mut acc = vec![1.0];
    for part in parts {
        let mut next = vec![0.0; acc.len() + part.len().saturating_sub(1)];
        for (a, pa) in acc.iter().enumerate() {
            for (b, pb) in part.iter().enumerate() {
                next[a + b] += pa * pb;
            }
        }
        acc = next;
    }
    acc
}

/// `P(X >= k)` for a distribution over `0..`.
pub fn tail_at_least(dist: &[f64], k: usize) -> f64 {
    dist.iter().skip(k).sum::<f64>().min(1.0)
}

/// `P(X <= k)` for a distribution over `0..`.
pub fn tail_at_most(dist: &[f64], k: usize) -> f64 {
    dist.iter().take(k + 1).sum::<f64>().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgen::{KeyAlg, Store};
    use lab_server::policy::{Accounting, Order, Policy, Settings, TlsVersion, plan_store};

    /// Every permutation of `items` (Heap's algorithm).
    fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
        fn go(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut a = items.to_vec();
        let mut out = Vec::new();
        go(a.len(), &mut a, &mut out);
        out
    }

    /// A DER Name of exactly `len` bytes (a CN of the right length).
    fn name_of_len(len: usize, tag: usize) -> Vec<u8> {
        let name = certgen::synth::subject(tag as u64, certgen::Profile::Fixed(len), 0);
        let der = name.to_der();
        assert_eq!(der.len(), len);
        der
    }

    /// The failure rate over every order of the store, each order planned
    /// by lab-server's Schannel policy exactly as the lab serves it.
    fn enumerated(others: &[usize], ca: usize, budget: usize) -> f64 {
        // Distinct subjects of the asked sizes; the CA is the last one.
        let mut subjects: Vec<Vec<u8>> = others
            .iter()
            .enumerate()
            .map(|(i, &w)| name_of_len(w - 2, i + 1))
            .collect();
        subjects.push(name_of_len(ca - 2, 0));
        let roots = certgen::roots::with_subjects(&subjects, 1, KeyAlg::Ed25519)
            .expect("roots")
            .into_roots();
        let settings = Settings {
            policy: Policy::Schannel,
            budget,
            accounting: Accounting::CaList,
            order: Order::Store,
        };
        let ca_at = roots.len() - 1;
        let orders = permutations(&(0..roots.len()).collect::<Vec<_>>());
        let mut failed = 0usize;
        for order in &orders {
            let store = Store::from_roots(order.iter().map(|&i| roots[i].clone()).collect());
            let plan = plan_store(&store, &settings, TlsVersion::Tls12, 16_389, &[]).expect("plan");
            let ca_pos = order.iter().position(|&i| i == ca_at).expect("the CA");
            failed += usize::from(!plan.sent.contains(&ca_pos));
        }
        failed as f64 / orders.len() as f64
    }

    #[test]
    fn store_odds_equal_the_count_over_every_order() {
        // Sizes chosen so the cut falls in the middle, with repeated sizes.
        let cases: &[(&[usize], usize, usize)] = &[
            (&[40, 70, 40, 100, 55, 62], 50, 200),
            (&[30, 30, 30, 30, 30, 30], 30, 100),
            (&[120, 35, 80, 44, 90, 61], 75, 190),
            (&[25, 25], 300, 200),     // the CA alone is over the budget
            (&[25, 25, 25], 25, 1000), // everything fits
        ];
        for &(others, ca, budget) in cases {
            let curve = store_curve(others, ca, budget);
            assert_eq!(curve.len(), others.len() + 2);
            for n in 1..=others.len() + 1 {
                let want = enumerated(&others[..n - 1], ca, budget);
                let got = curve[n];
                assert!(
                    (got - want).abs() < 1e-12,
                    "{others:?} ca {ca} budget {budget}, {n} roots: DP {got}, all orders {want}"
                );
            }
        }
    }

    #[test]
    fn profile_odds_equal_the_count_over_every_draw_and_order() {
        // Two or three sizes with unequal probabilities; every vector of
        // sizes for the other names, weighted by its probability, and every
        // order of each.
        let dists: &[&[(usize, f64)]] = &[
            &[(40, 0.25), (90, 0.75)],
            &[(30, 0.5), (60, 0.3), (110, 0.2)],
        ];
        for dist in dists {
            let (ca, budget, max) = (50, 220, 5);
            let curve = profile_curve(dist, ca, budget, max);
            assert_eq!(curve.len(), max + 1);
            for (n, &got) in curve.iter().enumerate().skip(1) {
                let m = n - 1;
                let mut want = 0.0;
                // Every size vector (base-k digits).
                for code in 0..dist.len().pow(m as u32) {
                    let mut c = code;
                    let mut sizes = Vec::new();
                    let mut prob = 1.0;
                    for _ in 0..m {
                        let (w, p) = dist[c % dist.len()];
                        sizes.push(w);
                        prob *= p;
                        c /= dist.len();
                    }
                    want += prob * enumerated(&sizes, ca, budget);
                }
                assert!(
                    (got - want).abs() < 1e-12,
                    "{dist:?}, {n} roots: convolution {got}, enumeration {want}"
                );
            }
        }
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // Wilson (1927); values as in Newcombe (1998), table I: 0/10, 1/10,
        // 81/263 at 95%.
        let cases = [
            (0, 10, 0.0, 0.2775),
            (1, 10, 0.0179, 0.4042),
            (81, 263, 0.2553, 0.3662),
        ];
        for (k, n, lo, hi) in cases {
            let (l, h) = wilson(k, n);
            assert!(
                (l - lo).abs() < 5e-4 && (h - hi).abs() < 5e-4,
                "{k}/{n}: {l} {h}"
            );
        }
        assert_eq!(wilson(10, 10).1, 1.0);
    }

    #[test]
    fn miss_probability_is_near_five_percent_and_zero_at_the_ends() {
        for (p, n) in [(0.3, 40), (0.5, 40), (0.7, 200), (0.44, 40)] {
            let a = miss_probability(p, n);
            assert!((0.01..0.1).contains(&a), "p {p}, n {n}: {a}");
        }
        assert_eq!(miss_probability(0.0, 40), 0.0);
        assert_eq!(miss_probability(1.0, 40), 0.0);
        let pmf = binomial_pmf(40, 0.3);
        assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn tails_of_sums_of_independent_counts() {
        // Two fair coins: 0, 1, 2 heads with 1/4, 1/2, 1/4.
        let coin = vec![0.5, 0.5];
        let two = convolve_all(&[coin.clone(), coin]);
        assert_eq!(two, vec![0.25, 0.5, 0.25]);
        assert_eq!(tail_at_least(&two, 1), 0.75);
        assert_eq!(tail_at_most(&two, 0), 0.25);
        assert_eq!(tail_at_least(&two, 3), 0.0);
    }
}
