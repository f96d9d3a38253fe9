//! SSRT's safe training (docs/design/protocols-images.md §1.7): the self-refinement ramp, the
//! five-scale monitor of the number of distinct predicted target classes, the ramp restart on a
//! drop, and the restore that the released code's aliased snapshot turns into a no-op.

use serde::{Deserialize, Serialize};

/// Safe training: a table `{ enabled, window, scales, mode }`, or just a mode
/// (`safe_training = "restore"`, e.g. `--set safe_training=restore`) with the released window
/// 1000 and scales 0..=4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SafeTrainingSetting")]
pub struct SafeTrainingConfig {
    pub enabled: bool,
    /// Iterations per monitored window (T = 1000).
    pub window: u64,
    /// Scales 0..=L tested (L = 4).
    pub scales: u32,
    pub mode: SafeTrainingMode,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SafeTrainingSetting {
    Mode(SafeTrainingMode),
    Full(SafeTrainingTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SafeTrainingTable {
    enabled: bool,
    window: u64,
    scales: u32,
    mode: SafeTrainingMode,
}

impl From<SafeTrainingSetting> for SafeTrainingConfig {
    fn from(s: SafeTrainingSetting) -> Self {
        match s {
            SafeTrainingSetting::Mode(mode) => SafeTrainingConfig { enabled: true, window: 1000, scales: 4, mode },
            SafeTrainingSetting::Full(t) => SafeTrainingConfig { enabled: t.enabled, window: t.window, scales: t.scales, mode: t.mode },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafeTrainingMode {
    /// As released: a drop restarts the ramp; the "restore" is a no-op (aliased snapshot).
    RampOnly,
    /// A drop also restores the weights saved at the last window boundary (our variant).
    Restore,
}

/// The safe-training monitor (pure bookkeeping; the method applies what it decides).
#[derive(Clone, Debug, PartialEq)]
pub struct SafeTraining {
    config: SafeTrainingConfig,
    /// φ and P of the ramp.
    pub phase: u64,
    pub period: u64,
    window: Vec<f64>,
    previous: Option<Vec<f64>>,
    /// A drop was flagged: restore at the next window boundary.
    pub restore_pending: bool,
    pub last_restore: u64,
}

/// Means of `values` split into `chunks` contiguous parts as numpy's `array_split` does (the first
/// `len mod chunks` parts one longer); an empty part's mean is NaN (no comparison holds).
pub fn chunk_means(values: &[f64], chunks: usize) -> Vec<f64> {
    let (q, r) = (values.len() / chunks, values.len() % chunks);
    let mut start = 0;
    (0..chunks)
        .map(|c| {
            let len = q + usize::from(c < r);
            let part = &values[start..start + len];
            start += len;
            if part.is_empty() {
                f64::NAN
            } else {
                part.iter().sum::<f64>() / len as f64
            }
        })
        .collect()
}

impl SafeTraining {
    pub fn new(config: SafeTrainingConfig) -> SafeTraining {
        SafeTraining { config, phase: 0, period: config.window, window: Vec::new(), previous: None, restore_pending: false, last_restore: 0 }
    }

    /// r(i); 1 when safe training is off.
    pub fn ramp(&self, i: u64) -> f64 {
        if !self.config.enabled || i >= self.phase + self.period {
            return 1.0;
        }
        (((i - self.phase) as f64 / self.period as f64) * std::f64::consts::FRAC_PI_2).sin()
    }

    /// At the start of iteration `i`: whether the weights are to be restored now (a drop was
    /// flagged and this is a window boundary after 0), and whether a new snapshot is due.
    pub fn begin(&mut self, i: u64) -> (bool, bool) {
        if !self.config.enabled || i % self.config.window != 0 {
            return (false, false);
        }
        let restore = self.restore_pending && i > 0;
        if restore {
            self.restore_pending = false;
            self.last_restore = i;
        }
        self.window.clear();
        (restore, true)
    }

    /// Records iteration `i`'s diversity (distinct predicted target classes) with its ramp `r`;
    /// at a window's last iteration tests for a drop: the scale flagged, if any.
    pub fn record(&mut self, i: u64, diversity: f64, r: f64) -> Option<u32> {
        if !self.config.enabled {
            return None;
        }
        self.window.push(diversity);
        if (i + 1) % self.config.window != 0 || i == 0 {
            return None;
        }
        match self.drop_scale().filter(|_| r > 0.1) {
            Some(scale) => {
                self.restore_pending = true;
                if i - self.last_restore <= self.period {
                    self.period *= 2;
                }
                self.phase = i;
                Some(scale)
            }
            None => {
                self.previous = Some(self.window.clone());
                None
            }
        }
    }

    /// The first scale l (2^l chunks, with the previous window's last chunk in front) where a
    /// chunk's mean falls more than 1 below the one before it.
    fn drop_scale(&self) -> Option<u32> {
        (0..=self.config.scales).find(|&l| {
            let chunks = 1usize << l;
            let mut means = chunk_means(&self.window, chunks);
            if let Some(previous) = &self.previous {
                means.insert(0, *chunk_means(previous, chunks).last().expect("at least one chunk"));
            }
            means.windows(2).any(|w| w[1] < w[0] - 1.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SafeTrainingConfig {
        SafeTrainingConfig { enabled: true, window: 10, scales: 2, mode: SafeTrainingMode::RampOnly }
    }

    #[test]
    fn safe_training_reads_a_table_or_just_a_mode() {
        #[derive(Deserialize)]
        struct T {
            safe_training: SafeTrainingConfig,
        }
        let short: T = serde_json::from_str(r#"{"safe_training": "restore"}"#).unwrap();
        assert_eq!(short.safe_training, SafeTrainingConfig { enabled: true, window: 1000, scales: 4, mode: SafeTrainingMode::Restore });
        let full: T = serde_json::from_str(r#"{"safe_training": {"enabled": false, "window": 10, "scales": 2, "mode": "ramp-only"}}"#).unwrap();
        assert_eq!(full.safe_training, SafeTrainingConfig { enabled: false, window: 10, scales: 2, mode: SafeTrainingMode::RampOnly });
        assert!(serde_json::from_str::<T>(r#"{"safe_training": "sometimes"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"safe_training": {"enabled": true, "window": 10, "scales": 2, "mode": "restore", "extra": 1}}"#).is_err());
    }

    #[test]
    fn chunk_means_split_as_numpy_array_split() {
        assert_eq!(chunk_means(&[1.0, 2.0, 3.0, 4.0, 5.0], 2), vec![2.0, 4.5]);
        assert_eq!(chunk_means(&[1.0, 2.0, 3.0, 4.0, 5.0], 3), vec![1.5, 3.5, 5.0]);
        let empty = chunk_means(&[1.0], 2);
        assert_eq!(empty[0], 1.0);
        assert!(empty[1].is_nan());
    }

    #[test]
    fn the_ramp_rises_as_a_quarter_sine_and_restarts_after_a_drop() {
        let mut s = SafeTraining::new(config());
        assert_eq!(s.ramp(0), 0.0);
        assert!((s.ramp(5) - (0.5 * std::f64::consts::FRAC_PI_2).sin()).abs() < 1e-12);
        assert_eq!(s.ramp(10), 1.0);
        // Window 0..9 steady at 5 classes, window 10..19 steady: no drop.
        for i in 0..20 {
            if i % 10 == 0 {
                s.begin(i);
            }
            assert_eq!(s.record(i, 5.0, s.ramp(i)), None);
        }
        // Window 20..29: the second half drops to 3 classes. Scale 0 compares the previous
        // window's mean (5) with this one's (4): not more than 1 lower; scale 1 compares the
        // halves (5, 3) after the previous window's last half (5): a drop.
        s.begin(20);
        let mut flagged = None;
        for i in 20..30 {
            flagged = s.record(i, if i < 25 { 5.0 } else { 3.0 }, 1.0).or(flagged);
        }
        assert_eq!(flagged, Some(1));
        assert!(s.restore_pending);
        assert_eq!((s.phase, s.period), (29, 10), "29 - 0 > 10: the period stays");
        assert!(s.ramp(30) < 0.2, "the ramp restarts");
        assert_eq!(s.begin(30), (true, true), "restore at the next boundary, then a new snapshot");
        assert_eq!(s.last_restore, 30);
        // Another drop within one period of that restore doubles the period.
        let mut flagged = None;
        for i in 30..40 {
            flagged = s.record(i, if i < 35 { 5.0 } else { 1.0 }, 1.0).or(flagged);
        }
        assert!(flagged.is_some());
        assert_eq!((s.phase, s.period), (39, 20));
    }

    #[test]
    fn a_drop_while_the_ramp_is_low_is_ignored() {
        let mut s = SafeTraining::new(config());
        s.begin(0);
        for i in 0..10 {
            s.record(i, 6.0, 1.0);
        }
        s.begin(10);
        let mut flagged = None;
        for i in 10..20 {
            flagged = s.record(i, 1.0, 0.05).or(flagged);
        }
        assert_eq!(flagged, None);
        assert!(!s.restore_pending);
    }
}
