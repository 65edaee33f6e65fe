//! Feature set `v1`: the named, versioned contract models are trained on.
//!
//! Every feature a model may consume is listed here once, with its unit and definition.
//! The SDK builds model input tensors by these names, the trainer fits on them, and the
//! backend validates uploads against them. Renaming or redefining a feature means a new
//! feature set version, never an edit of this table.

/// Version tag of this feature set, carried in model manifests and sync records.
pub const FEATURE_SET_VERSION: &str = "v1";

/// Which signal a feature is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Beat-to-beat features from ECG R-peaks or PPG systolic peaks.
    Cardiac,
    /// Tri-axial accelerometer features.
    Accel,
    /// Signal quality, defined for every signal.
    Quality,
}

/// One feature of the set: its stable name, unit and definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDef {
    /// Stable snake_case name, the key used on the wire and in model manifests.
    pub name: &'static str,
    /// Unit of the value (`"1"` for dimensionless).
    pub unit: &'static str,
    /// Which signal it comes from.
    pub source: Source,
    /// Definition, precise enough to re-implement.
    pub definition: &'static str,
}

macro_rules! defs {
    ($($name:literal, $unit:literal, $src:ident, $def:literal;)*) => {
        /// All features of set `v1`, in canonical order.
        pub const FEATURES_V1: &[FeatureDef] = &[
            $(FeatureDef { name: $name, unit: $unit, source: Source::$src, definition: $def },)*
        ];
    };
}

defs! {
    "hr_mean", "bpm", Cardiac, "60000 / mean NN interval (after ectopic correction).";
    "hr_min", "bpm", Cardiac, "Minimum of the instantaneous heart rate 60000/NN over the window.";
    "hr_max", "bpm", Cardiac, "Maximum of the instantaneous heart rate 60000/NN over the window.";
    "mean_nn", "ms", Cardiac, "Mean of NN intervals.";
    "sdnn", "ms", Cardiac, "Sample standard deviation (n-1) of NN intervals.";
    "rmssd", "ms", Cardiac, "Root mean square of successive NN differences.";
    "sdsd", "ms", Cardiac, "Sample standard deviation (n-1) of successive NN differences.";
    "pnn20", "%", Cardiac, "Percentage of successive NN differences larger than 20 ms.";
    "pnn50", "%", Cardiac, "Percentage of successive NN differences larger than 50 ms.";
    "lf_power", "ms^2", Cardiac, "Power of the NN series (cubic-resampled at 4 Hz, detrended) in 0.04-0.15 Hz, Welch periodogram.";
    "hf_power", "ms^2", Cardiac, "Power of the NN series in 0.15-0.40 Hz, same estimator as lf_power.";
    "lf_hf_ratio", "1", Cardiac, "lf_power / hf_power.";
    "sd1", "ms", Cardiac, "Poincare SD1 = sqrt(0.5) * SDSD.";
    "sd2", "ms", Cardiac, "Poincare SD2 = sqrt(2 * SDNN^2 - 0.5 * SDSD^2).";
    "sample_entropy", "1", Cardiac, "Sample entropy of the NN series, m = 2, r = 0.2 * SDNN (Richman & Moorman 2000).";
    "beat_count", "1", Cardiac, "Number of detected beats in the window.";
    "ectopic_fraction", "1", Cardiac, "Fraction of RR intervals flagged (missed, extra, ectopic or artifact beat) and corrected or dropped; rule in rr.rs.";
    "sqi", "1", Quality, "Signal quality index in [0, 1]; results below the documented threshold are not predicted.";
    "enmo_mean", "mg", Accel, "Mean of max(0, |a| - 1 g) over the window (Euclidean norm minus one).";
    "step_count", "1", Accel, "Steps detected in the window.";
    "cadence", "steps/min", Accel, "Steps per minute over the walking portion of the window.";
    "dominant_freq", "Hz", Accel, "Frequency of the largest spectral peak of |a| in 0.5-5 Hz.";
    "intensity_class", "1", Accel, "0 sedentary, 1 light, 2 moderate, 3 vigorous, from enmo_mean thresholds.";
}

/// Looks a feature of set `v1` up by name.
pub fn feature_def(name: &str) -> Option<&'static FeatureDef> {
    FEATURES_V1.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = FEATURES_V1.iter().map(|f| f.name).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate feature name in v1");
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(feature_def("rmssd").map(|f| f.unit), Some("ms"));
        assert!(feature_def("no_such_feature").is_none());
    }
}
