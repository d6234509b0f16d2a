//! The detector on generated traffic: Poisson operations, payloads of mixed sizes, binomial
//! failures, log-normal latencies, at a 10 s interval with the default warm-up (10 min) and
//! threshold. Prints what it measured (`-- --nocapture`); BENCHMARKS.md records it.
//!
//! - A day of steady traffic: at most one false event per signal.
//! - A 3x surge, a collapse to a third, an error ratio from 0.1% to 5%, a latency doubling:
//!   each detected within 2 intervals in at least 99% of trials.
//! - A past anomaly does not hide a second one.

// Samples of distributions become counts: non-negative, and far below 2^52.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use nasflow_detect::{
    detector::{Contributor, NasTraffic, Traffic, DEFAULT_THRESHOLD, DEFAULT_WARMUP},
    DetectConfig, Detector, Direction, EventState, NasKey, Signal,
};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Binomial, Distribution, Normal, Poisson};

const INTERVAL: Duration = Duration::from_secs(10);
/// Operations per second of the steady traffic.
const RATE: f64 = 50.0;
const ERROR_RATIO: f64 = 0.001;
/// Median latency 10 ms (above the 5 ms a rise must reach), log-normal with sigma 0.5.
const LATENCY_MU: f64 = 16.118_095_650_958_32; // ln(1e7 ns)
const LATENCY_SIGMA: f64 = 0.5;
const SIZES: [u64; 3] = [4096, 65536, 131_072];

fn cfg() -> DetectConfig {
    let warmup = u32::try_from(DEFAULT_WARMUP.as_secs() / INTERVAL.as_secs()).expect("small");
    DetectConfig { interval: INTERVAL, warmup, threshold: DEFAULT_THRESHOLD }
}

#[derive(Clone, Copy)]
struct Shape {
    rate: f64,
    error_ratio: f64,
    latency_factor: f64,
}

const STEADY: Shape = Shape { rate: RATE, error_ratio: ERROR_RATIO, latency_factor: 1.0 };

/// One interval of traffic of `shape`, from two pods sharing it 1:3. Per pod: Poisson
/// operations, binomial failures, payload sizes drawn per operation (multinomial counts), and
/// the sum of log-normal latencies (normal by the central limit theorem: hundreds of terms).
fn interval(rng: &mut StdRng, shape: Shape, pods: &[Arc<Contributor>; 2]) -> Vec<NasTraffic> {
    let mut total = Traffic::default();
    let mut contributors = Vec::new();
    let s2 = LATENCY_SIGMA * LATENCY_SIGMA;
    let lat_mean = (LATENCY_MU + s2 / 2.0).exp();
    let lat_var = (s2.exp() - 1.0) * (2.0 * LATENCY_MU + s2).exp();
    for (i, who) in pods.iter().enumerate() {
        let part = if i == 0 { 0.25 } else { 0.75 };
        let mean = shape.rate * INTERVAL.as_secs_f64() * part;
        let ops = Poisson::new(mean).expect("mean").sample(rng) as u64;
        let failed = Binomial::new(ops, shape.error_ratio).expect("p").sample(rng);
        let small = Binomial::new(ops, 1.0 / 3.0).expect("p").sample(rng);
        let medium = Binomial::new(ops - small, 0.5).expect("p").sample(rng);
        let large = ops - small - medium;
        let bytes = small * SIZES[0] + medium * SIZES[1] + large * SIZES[2];
        let n = ops as f64;
        let latency = Normal::new(n * lat_mean, (n * lat_var).sqrt()).expect("normal").sample(rng).max(0.0);
        let t = Traffic { ops, bytes, failed, latency_ns: (latency * shape.latency_factor) as u64, timed: ops };
        total.add(&t);
        contributors.push((Arc::clone(who), t));
    }
    vec![NasTraffic { nas: Some(nas()), total, contributors }]
}

fn nas() -> NasKey {
    NasKey { server: "10.0.0.5".into(), export: "/export".into() }
}

fn pods() -> [Arc<Contributor>; 2] {
    let p = |n: &str| {
        Arc::new(Contributor {
            key: n.into(),
            attributes: vec![("k8s.namespace.name", "ns".into()), ("k8s.pod.name", n.into())],
        })
    };
    [p("small"), p("large")]
}

fn at(i: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + INTERVAL * u32::try_from(i).expect("small")
}

#[test]
fn a_steady_day_gives_at_most_one_false_event_per_signal() {
    let days = 3;
    let per_day = 86_400 / INTERVAL.as_secs();
    let mut false_events = [0u32; 4];
    let mut top_score = [0f64; 4];
    for day in 0..days {
        let mut rng = StdRng::seed_from_u64(1000 + day);
        let mut d = Detector::new(cfg());
        let pods = pods();
        for i in 0..per_day {
            let f = d.observe(at(i), interval(&mut rng, STEADY, &pods));
            for s in &f.scores {
                top_score[s.signal as usize] = top_score[s.signal as usize].max(s.score);
            }
            for e in f.events.iter().filter(|e| e.state == EventState::Open) {
                false_events[e.signal as usize] += 1;
            }
        }
    }
    println!("steady traffic, {days} days of {per_day} intervals: false events per signal {false_events:?} (operations, bytes, errors, latency); highest scores {top_score:.1?}");
    for s in Signal::ALL {
        assert!(
            false_events[s as usize] <= u32::try_from(days).expect("small"),
            "{s:?}: {} false events in {days} days",
            false_events[s as usize]
        );
    }
}

#[test]
fn a_wandering_day_is_judged_on_its_own_spread() {
    // Real traffic is not Poisson: its rate wanders. Here it moves by a log-normal factor
    // (sigma 0.2, about +-20%, then 0.4) every interval; the spread the window measures
    // absorbs it.
    let per_day = 86_400 / INTERVAL.as_secs();
    for sigma in [0.2, 0.4] {
        let mut rng = StdRng::seed_from_u64(77);
        let wander: Normal<f64> = Normal::new(0.0, sigma).expect("normal");
        let mut d = Detector::new(cfg());
        let pods = pods();
        let mut false_events = [0u32; 4];
        for i in 0..per_day {
            let shape = Shape { rate: RATE * wander.sample(&mut rng).exp(), ..STEADY };
            for e in d.observe(at(i), interval(&mut rng, shape, &pods)).events {
                if e.state == EventState::Open {
                    false_events[e.signal as usize] += 1;
                }
            }
        }
        println!("traffic wandering by a log-normal factor of sigma {sigma} per interval, one day: false events per signal {false_events:?}");
        assert!(false_events.iter().all(|&n| n <= 1), "sigma {sigma}: {false_events:?}");
    }
}

/// Runs `trials` detectors through a warm-up of steady traffic, then `change` from interval
/// `warm`; counts the trials where `signal` opened in `direction` within 2 intervals.
fn detection(signal: Signal, direction: Direction, change: Shape, trials: u64) -> (u64, u64) {
    let warm = u64::from(cfg().warmup) + 30;
    let mut hits = 0;
    let mut named = 0;
    for trial in 0..trials {
        let mut rng = StdRng::seed_from_u64(trial);
        let mut d = Detector::new(cfg());
        let pods = pods();
        for i in 0..warm {
            d.observe(at(i), interval(&mut rng, STEADY, &pods));
        }
        let mut found = false;
        for i in warm..warm + 2 {
            // The large pod changes, the small one stays as it was.
            let mut t = interval(&mut rng, change, &pods);
            let small = interval(&mut rng, STEADY, &pods)[0].contributors[0].1;
            let t0 = &mut t[0];
            t0.total = small;
            t0.total.add(&t0.contributors[1].1);
            t0.contributors[0].1 = small;
            let f = d.observe(at(i), t);
            if let Some(e) =
                f.events.iter().find(|e| e.signal == signal && e.direction == direction && e.state == EventState::Open)
            {
                found = true;
                if e.contributors.first().is_some_and(|c| c.who.key == "large") {
                    named += 1;
                }
                break;
            }
        }
        hits += u64::from(found);
    }
    (hits, named)
}

/// What the large pod (three quarters of the traffic) must do for the NAS's value `v` to
/// become `factor` times as large while the small one stays as it was.
fn large(v: f64, factor: f64) -> f64 {
    v * (factor - 0.25) / 0.75
}

#[test]
fn changes_are_detected_within_two_intervals() {
    let trials = 500;
    let cases = [
        ("3x surge", Signal::Operations, Direction::Up, Shape { rate: large(RATE, 3.0), ..STEADY }),
        ("3x surge (bytes)", Signal::Bytes, Direction::Up, Shape { rate: large(RATE, 3.0), ..STEADY }),
        ("collapse to a third", Signal::Operations, Direction::Down, Shape { rate: large(RATE, 1.0 / 3.0), ..STEADY }),
        (
            "collapse to a third (bytes)",
            Signal::Bytes,
            Direction::Down,
            Shape { rate: large(RATE, 1.0 / 3.0), ..STEADY },
        ),
        ("errors 0.1% to 5%", Signal::Errors, Direction::Up, Shape { error_ratio: large(ERROR_RATIO, 50.0), ..STEADY }),
        ("latency doubling", Signal::Latency, Direction::Up, Shape { latency_factor: large(1.0, 2.0), ..STEADY }),
    ];
    for (name, signal, direction, shape) in cases {
        let (hits, named) = detection(signal, direction, shape, trials);
        let rate = hits as f64 / trials as f64;
        println!("{name}: detected within 2 intervals in {hits}/{trials} trials ({:.1}%), the changed pod named first in {named}", rate * 100.0);
        assert!(rate >= 0.99, "{name}: {hits}/{trials}");
    }
}

#[test]
fn a_past_anomaly_does_not_hide_the_next() {
    let trials = 100;
    let mut second = 0;
    for trial in 0..trials {
        let mut rng = StdRng::seed_from_u64(500 + trial);
        let mut d = Detector::new(cfg());
        let pods = pods();
        let warm = u64::from(cfg().warmup) + 10;
        let surge = Shape { rate: RATE * 3.0, ..STEADY };
        let mut i = 0;
        let mut step = |d: &mut Detector, rng: &mut StdRng, shape: Shape| {
            i += 1;
            d.observe(at(i), interval(rng, shape, &pods))
        };
        for _ in 0..warm {
            step(&mut d, &mut rng, STEADY);
        }
        // A first surge lasting a quarter of the window, a pause, then the same again.
        for _ in 0..cfg().warmup / 4 {
            step(&mut d, &mut rng, surge);
        }
        for _ in 0..5 {
            step(&mut d, &mut rng, STEADY);
        }
        let mut found = false;
        for _ in 0..2 {
            let f = step(&mut d, &mut rng, surge);
            found |= f.events.iter().any(|e| e.signal == Signal::Operations && e.state == EventState::Open);
        }
        second += u64::from(found);
    }
    println!("a second 3x surge after one lasting a quarter of the window: detected in {second}/{trials} trials");
    assert!(second >= 99, "{second}/{trials}");
}
