//! Feature set `v1`: the named, versioned contract models are trained on.
//!
//! Every feature a model may consume is listed here once, with its unit, definition and
//! domain. The DSP crate computes these names (`vitalcore-signal` re-exports this module), the
//! SDK builds model input tensors and upload records by them, the trainer fits on them, and
//! the backend refuses an uploaded record whose names are not in the set it names or whose
//! values lie outside [`FeatureDef::accepts`]. It lives in this serde-only crate so the server
//! depends on the table and not on the DSP code. Renaming or redefining a feature means a new
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

/// One feature of the set: its stable name, unit, definition and domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDef {
    /// Stable snake_case name, the key used on the wire and in model manifests.
    pub name: &'static str,
    /// Unit of the value (`"1"` for dimensionless).
    pub unit: &'static str,
    /// Which signal it comes from.
    pub source: Source,
    /// Definition, precise enough to re-implement.
    pub definition: &'static str,
    /// Smallest value a measurement can take (the domain's lower end).
    pub lo: f64,
    /// Largest value a measurement can take (the domain's upper end).
    pub hi: f64,
}

/// How many domain widths an uploaded value may lie outside `lo..=hi` and still be accepted.
///
/// A device may add Laplace noise to a feature before upload (local differential privacy, noise
/// scale = clamp width / epsilon, the clamp inside the domain); the noised value leaves the
/// domain by design and must still be accepted, unbiased. With this margin a value noised at
/// any per-feature epsilon >= 0.5 passes except with probability below e^-25; the SDK clamps
/// the rare farther draw onto the accepted interval (post-processing, which keeps the privacy
/// guarantee). What the margin still refuses is what is not a measurement at all: identifiers
/// or counters stored in a value, overflow sentinels, 1e300.
pub const NOISE_MARGIN_WIDTHS: f64 = 50.0;

impl FeatureDef {
    /// The interval an uploaded value must lie in: the domain widened by
    /// [`NOISE_MARGIN_WIDTHS`] domain widths on each side.
    pub fn accepted(&self) -> (f64, f64) {
        let m = (self.hi - self.lo) * NOISE_MARGIN_WIDTHS;
        (self.lo - m, self.hi + m)
    }

    /// Whether `v` may be uploaded as this feature: finite and within [`FeatureDef::accepted`].
    pub fn accepts(&self, v: f64) -> bool {
        let (lo, hi) = self.accepted();
        v.is_finite() && (lo..=hi).contains(&v)
    }
}

macro_rules! defs {
    ($($name:literal, $unit:literal, $src:ident, $lo:literal, $hi:literal, $def:literal;)*) => {
        /// All features of set `v1`, in canonical order.
        pub const FEATURES_V1: &[FeatureDef] = &[
            $(FeatureDef { name: $name, unit: $unit, source: Source::$src, definition: $def, lo: $lo, hi: $hi },)*
        ];
    };
}

defs! {
    "hr_mean", "bpm", Cardiac, 10.0, 350.0, "60000 / mean NN interval (after ectopic correction).";
    "hr_min", "bpm", Cardiac, 10.0, 350.0, "Minimum of the instantaneous heart rate 60000/NN over the window.";
    "hr_max", "bpm", Cardiac, 10.0, 350.0, "Maximum of the instantaneous heart rate 60000/NN over the window.";
    "mean_nn", "ms", Cardiac, 150.0, 6000.0, "Mean of NN intervals.";
    "sdnn", "ms", Cardiac, 0.0, 3000.0, "Sample standard deviation (n-1) of NN intervals.";
    "rmssd", "ms", Cardiac, 0.0, 3000.0, "Root mean square of successive NN differences.";
    "sdsd", "ms", Cardiac, 0.0, 3000.0, "Sample standard deviation (n-1) of successive NN differences.";
    "pnn20", "%", Cardiac, 0.0, 100.0, "Percentage of successive NN differences larger than 20 ms.";
    "pnn50", "%", Cardiac, 0.0, 100.0, "Percentage of successive NN differences larger than 50 ms.";
    "lf_power", "ms^2", Cardiac, 0.0, 1.0e7, "Power of the NN series (cubic-resampled at 4 Hz, detrended) in 0.04-0.15 Hz, Welch periodogram.";
    "hf_power", "ms^2", Cardiac, 0.0, 1.0e7, "Power of the NN series in 0.15-0.40 Hz, same estimator as lf_power.";
    "lf_hf_ratio", "1", Cardiac, 0.0, 1.0e4, "lf_power / hf_power.";
    "sd1", "ms", Cardiac, 0.0, 3000.0, "Poincare SD1 = sqrt(0.5) * SDSD.";
    "sd2", "ms", Cardiac, 0.0, 5000.0, "Poincare SD2 = sqrt(2 * SDNN^2 - 0.5 * SDSD^2).";
    "sample_entropy", "1", Cardiac, 0.0, 10.0, "Sample entropy of the NN series, m = 2, r = 0.2 * SDNN (Richman & Moorman 2000).";
    "beat_count", "1", Cardiac, 0.0, 10000.0, "Number of detected beats in the window.";
    "ectopic_fraction", "1", Cardiac, 0.0, 1.0, "Fraction of RR intervals flagged (missed, extra, ectopic or artifact beat) and corrected or dropped; rule in rr.rs.";
    "sqi", "1", Quality, 0.0, 1.0, "Signal quality index in [0, 1]; results below the documented threshold are not predicted.";
    "enmo_mean", "mg", Accel, 0.0, 20000.0, "Mean of max(0, |a| - 1 g) over the window (Euclidean norm minus one).";
    "step_count", "1", Accel, 0.0, 10000.0, "Steps detected in the window.";
    "cadence", "steps/min", Accel, 0.0, 300.0, "Steps per minute over the walking portion of the window.";
    "dominant_freq", "Hz", Accel, 0.0, 10.0, "Frequency of the largest spectral peak of |a| in 0.5-5 Hz.";
    "intensity_class", "1", Accel, 0.0, 3.0, "0 sedentary, 1 light, 2 moderate, 3 vigorous, from enmo_mean thresholds.";
}

/// Looks a feature of set `v1` up by name.
pub fn feature_def(name: &str) -> Option<&'static FeatureDef> {
    FEATURES_V1.iter().find(|f| f.name == name)
}

/// The features of the set named `version` (`"v1"`), or `None` for a set this crate does not
/// know.
pub fn feature_set(version: &str) -> Option<&'static [FeatureDef]> {
    (version == FEATURE_SET_VERSION).then_some(FEATURES_V1)
}

/// Feature `name` of the set named `version`, if both exist.
pub fn feature_in(version: &str, name: &str) -> Option<&'static FeatureDef> {
    feature_set(version)?.iter().find(|f| f.name == name)
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
    fn domains_are_ordered_and_accept_their_ends_but_not_junk() {
        for f in FEATURES_V1 {
            assert!(f.lo < f.hi, "{}", f.name);
            assert!(f.accepts(f.lo) && f.accepts(f.hi), "{}", f.name);
            assert!(!f.accepts(f64::NAN) && !f.accepts(f64::INFINITY));
            assert!(!f.accepts(1e300) && !f.accepts(-1e300), "{}", f.name);
        }
        let hr = feature_def("hr_mean").unwrap();
        assert!(hr.accepts(-500.0), "room for locally noised values");
        assert!(
            !hr.accepts(78_051_120.0),
            "an identifier is not a heart rate"
        );
        assert_eq!(feature_in("v1", "rmssd").map(|f| f.unit), Some("ms"));
        assert!(feature_in("v2", "rmssd").is_none());
        assert!(feature_set("v1").is_some() && feature_set("").is_none());
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(feature_def("rmssd").map(|f| f.unit), Some("ms"));
        assert!(feature_def("no_such_feature").is_none());
    }
}
