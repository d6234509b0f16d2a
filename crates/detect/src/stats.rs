//! Tail probabilities as scores (`-log10 p`), and robust location and scale. Pure functions:
//! the detector decides what is compared with what.

use statrs::function::{beta, erf, gamma};

/// The largest score: a probability below `1e-300` (or one that underflows) scores this.
pub const MAX_SCORE: f64 = 300.0;

/// `-log10 p`, bounded to `[0, MAX_SCORE]`.
#[must_use]
pub fn score_of(p: f64) -> f64 {
    if p.is_nan() || p >= 1.0 {
        return 0.0;
    }
    if p <= 0.0 {
        return MAX_SCORE;
    }
    (-p.log10()).clamp(0.0, MAX_SCORE)
}

/// Score of seeing at least `k` events from a Poisson process expecting `mean`, with counts
/// measured in units `dispersion` times larger than one event (quasi-Poisson: real traffic
/// varies more than Poisson, and bytes come in payloads; `dispersion` = 1 is plain Poisson).
/// `P(X >= k) = P(k, mean)`, the lower regularized gamma function, continuous in `k`.
#[must_use]
pub fn poisson_upper(k: f64, mean: f64, dispersion: f64) -> f64 {
    let (k, mean) = (k / dispersion, mean / dispersion);
    if k <= mean || k <= 0.0 {
        return 0.0;
    }
    if mean <= 0.0 {
        return MAX_SCORE;
    }
    gamma::checked_gamma_lr(k, mean).map_or(0.0, score_of)
}

/// Score of seeing at most `k` events where `mean` was expected (see [`poisson_upper`]):
/// `P(X <= k) = Q(k + 1, mean)`, the upper regularized gamma function.
#[must_use]
pub fn poisson_lower(k: f64, mean: f64, dispersion: f64) -> f64 {
    let (k, mean) = (k / dispersion, mean / dispersion);
    if k >= mean || mean <= 0.0 {
        return 0.0;
    }
    gamma::checked_gamma_ur(k.max(0.0) + 1.0, mean).map_or(0.0, score_of)
}

/// Score of at least `failed` failures out of `n` operations when each fails with
/// probability `p`: `P(X >= failed) = I_p(failed, n - failed + 1)`.
#[must_use]
pub fn binomial_upper(failed: f64, n: f64, p: f64) -> f64 {
    if failed <= n * p || failed <= 0.0 || n <= 0.0 {
        return 0.0;
    }
    if p <= 0.0 {
        return MAX_SCORE;
    }
    if p >= 1.0 {
        return 0.0;
    }
    beta::checked_beta_reg(failed, n - failed + 1.0, p).map_or(0.0, score_of)
}

/// Score of a standard normal deviate at least `z`.
#[must_use]
pub fn normal_upper(z: f64) -> f64 {
    if z <= 0.0 {
        return 0.0;
    }
    score_of(0.5 * erf::erfc(z / std::f64::consts::SQRT_2))
}

/// Median and median absolute deviation of `values` (reordered in place); `None` when empty.
#[must_use]
pub fn median_mad(values: &mut [f64]) -> Option<(f64, f64)> {
    let median = median(values)?;
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    Some((median, median_of_sorted_or_not(values)))
}

fn median_of_sorted_or_not(values: &mut [f64]) -> f64 {
    median(values).unwrap_or(0.0)
}

/// The median of `values` (reordered in place); `None` when empty.
#[must_use]
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(f64::midpoint(lower, upper))
}

/// The factor that makes the MAD of normal data estimate its standard deviation.
pub const MAD_TO_SIGMA: f64 = 1.4826;

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn poisson_tails_match_the_distribution() {
        // P(X >= 15 | 5) = 0.000226.
        assert!(close(poisson_upper(15.0, 5.0, 1.0), -(0.000_226_0_f64).log10(), 0.01));
        // P(X <= 1 | 10) = 0.000499.
        assert!(close(poisson_lower(1.0, 10.0, 1.0), -(0.000_499_4_f64).log10(), 0.01));
        // Nothing unusual about the mean itself.
        assert!(poisson_upper(5.0, 5.0, 1.0) == 0.0 && poisson_lower(5.0, 5.0, 1.0) == 0.0);
        // Dispersion: 1500 bytes in 100-byte payloads against 500 expected is 15 against 5.
        assert!(close(poisson_upper(1500.0, 500.0, 100.0), poisson_upper(15.0, 5.0, 1.0), 1e-9));
        // Far tails saturate instead of overflowing.
        assert!(close(poisson_upper(1e6, 10.0, 1.0), MAX_SCORE, 1e-9));
        assert!(poisson_upper(3.0, 0.0, 1.0) == MAX_SCORE);
    }

    #[test]
    fn binomial_tail_matches_the_distribution() {
        // P(X >= 5 | n = 1000, p = 0.001) = 0.0036369.
        assert!(close(binomial_upper(5.0, 1000.0, 0.001), -(0.003_636_9_f64).log10(), 0.01));
        assert!(binomial_upper(1.0, 1000.0, 0.001) == 0.0, "at the expected count");
        assert!(binomial_upper(50.0, 1000.0, 0.001) > 50.0);
    }

    #[test]
    fn normal_tail() {
        // P(Z >= 3) = 0.0013499.
        assert!(close(normal_upper(3.0), -(0.001_349_9_f64).log10(), 0.001));
        assert!(normal_upper(-1.0) == 0.0);
    }

    #[test]
    fn median_and_mad() {
        let mut v = [5.0, 1.0, 3.0, 100.0, 2.0];
        assert_eq!(median_mad(&mut v), Some((3.0, 2.0)));
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut v), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn probabilities_become_scores() {
        assert!(close(score_of(1e-6), 6.0, 1e-12));
        assert!(score_of(0.0) == MAX_SCORE && score_of(2.0) == 0.0 && score_of(f64::NAN) == 0.0);
    }
}
