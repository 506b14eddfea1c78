//! Timing statistics and JSON text for the benchmark drivers that report to `scripts/gpu-bench.sh`
//! (no JSON library: the few objects they write are built from these pieces).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Seconds per repetition, sorted: the median and the spread of a timed loop.
#[derive(Clone, Debug)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Times `f` `warmup` times untimed, then until `reps` samples are taken or `budget` is spent
    /// (with at least 3 samples, so a slow adapter still gives a median).
    pub fn take(warmup: usize, reps: usize, budget: Duration, mut f: impl FnMut()) -> Self {
        for _ in 0..warmup {
            f();
        }
        let started = Instant::now();
        let mut v = Vec::with_capacity(reps);
        while v.len() < reps.max(1) && (v.len() < 3 || started.elapsed() < budget) {
            let t = Instant::now();
            f();
            v.push(t.elapsed().as_secs_f64());
        }
        Self::from(v)
    }

    pub fn from(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Samples(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-quantile (0..=1) by nearest rank; NaN without samples.
    pub fn quantile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }

    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// `{"reps":…,"median_s":…,"p10_s":…,"p90_s":…}`
    pub fn json(&self) -> String {
        format!(
            "{{\"reps\":{},\"median_s\":{},\"p10_s\":{},\"p90_s\":{}}}",
            self.len(),
            num(self.median()),
            num(self.quantile(0.1)),
            num(self.quantile(0.9))
        )
    }
}

/// A JSON number (`null` for NaN or infinity, which JSON cannot write; whole numbers as integers).
pub fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        format!("{v:.6e}")
    } else {
        "null".into()
    }
}

/// `v` with three significant digits, for the printed tables (rates span 0.001 to 4000).
pub fn sig3(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object from `(key, already-encoded value)` pairs.
pub fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", string(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON array of already-encoded values.
pub fn array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}
