//! Figures: median and p99 over samples, in microseconds.

use std::time::Duration;

use serde::Serialize;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub median: f64,
    pub p99: f64,
    pub samples: usize,
}

/// Median and p99 of latency samples, in µs.
pub fn latency(name: impl Into<String>, mut samples: Vec<Duration>) -> Figure {
    samples.sort();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1e6
    };
    Figure {
        name: name.into(),
        unit: "us",
        median: at(0.5),
        p99: at(0.99),
        samples: samples.len(),
    }
}

/// A single value (throughput, memory): median and p99 are the value.
pub fn value(name: impl Into<String>, unit: &'static str, value: f64) -> Figure {
    Figure {
        name: name.into(),
        unit,
        median: value,
        p99: value,
        samples: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let samples = (1..=100).map(Duration::from_micros).collect();
        let f = latency("x", samples);
        assert_eq!(f.median, 51.0);
        assert_eq!(f.p99, 99.0);
        assert_eq!(latency("empty", Vec::new()).median, 0.0);
    }
}
