//! Figures, their distributions and their targets.

use std::fmt;

/// Which way a figure is good.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The figure should be at most the target.
    AtMost(f64),
    /// The figure should be at least the target.
    AtLeast(f64),
    /// No target: reported for information.
    None,
}

/// How a figure is printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Ms,
    Secs,
    Mb,
    MbPerSec,
    LinesPerSec,
    Ratio,
    Count,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Ms => format!("{value:.1} ms"),
            Unit::Secs => format!("{value:.2} s"),
            Unit::Mb => format!("{value:.1} MB"),
            Unit::MbPerSec => format!("{value:.1} MB/s"),
            Unit::LinesPerSec => {
                if value >= 10_000.0 {
                    format!("{:.0}k lines/s", value / 1000.0)
                } else {
                    format!("{value:.0} lines/s")
                }
            }
            Unit::Ratio => format!("{value:.2}×"),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

/// One reported figure: every sample, a unit, and its target.
#[derive(Clone, Debug)]
pub struct Metric {
    pub name: String,
    pub unit: Unit,
    pub goal: Goal,
    /// Text shown in the target column when the goal alone does not say it all.
    pub target_note: Option<String>,
    pub samples: Vec<f64>,
}

impl Metric {
    pub fn new(name: impl Into<String>, unit: Unit, goal: Goal, samples: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            unit,
            goal,
            target_note: None,
            samples,
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.target_note = Some(note.into());
        self
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }

    pub fn target_text(&self) -> String {
        let goal = match self.goal {
            Goal::AtMost(t) => format!("≤ {}", self.unit.format(t)),
            Goal::AtLeast(t) => format!("≥ {}", self.unit.format(t)),
            Goal::None => "—".to_owned(),
        };
        match &self.target_note {
            Some(note) if self.goal == Goal::None => note.clone(),
            Some(note) => format!("{goal} ({note})"),
            None => goal,
        }
    }

    /// Whether the median meets the target, and by how much it is over or under it.
    pub fn status_text(&self) -> String {
        let Some(summary) = self.summary() else {
            return "no data".to_owned();
        };
        let m = summary.median;
        match self.goal {
            Goal::None => "info".to_owned(),
            Goal::AtMost(t) => {
                if m <= t {
                    format!(
                        "met ({} under, {:.0}% headroom)",
                        self.unit.format(t - m),
                        pct(t - m, t)
                    )
                } else {
                    format!(
                        "MISSED by {} ({:.0}% over)",
                        self.unit.format(m - t),
                        pct(m - t, t)
                    )
                }
            }
            Goal::AtLeast(t) => {
                if m >= t {
                    format!(
                        "met ({} above, {:.0}% headroom)",
                        self.unit.format(m - t),
                        pct(m - t, t)
                    )
                } else {
                    format!(
                        "MISSED by {} (reaches {:.0}% of target)",
                        self.unit.format(t - m),
                        pct(m, t)
                    )
                }
            }
        }
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        100.0 * part / whole
    }
}

/// Median, p99 and range of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            n: sorted.len(),
            median: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted samples (the median of an even count is the mean of the
/// two middle ones).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if p == 50.0 && n & 1 == 0 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// One correctness check of a scenario.
#[derive(Clone, Debug)]
pub struct Check {
    pub what: String,
    pub ok: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", if self.ok { "✓" } else { "✗" }, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&s, 50.0), 50.5);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        let summary = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((summary.median, summary.min, summary.max), (3.0, 1.0, 5.0));
    }

    #[test]
    fn status_says_how_far_the_target_is() {
        let m = Metric::new("x", Unit::Ms, Goal::AtMost(100.0), vec![80.0]);
        assert!(m.status_text().starts_with("met (20.0 ms under"));
        let m = Metric::new("x", Unit::Ms, Goal::AtMost(100.0), vec![150.0]);
        assert!(m.status_text().starts_with("MISSED by 50.0 ms"));
    }
}
