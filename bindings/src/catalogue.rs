//! Version info and the feature set `v1` catalogue, as records the host languages can hold.
//!
//! The core's `FeatureDef` borrows `&'static str`, which uniffi cannot lift or lower, so the
//! FFI owns these mirror records for now; they are built from the one table in
//! `vitalcore_signal::feature_set`, never copied from it.

use vitalcore_signal::feature_set::{FeatureDef, Source};

/// Which signal a feature is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FeatureSource {
    /// Beat-to-beat features from ECG R-peaks or PPG systolic peaks.
    Cardiac,
    /// Tri-axial accelerometer features.
    Accel,
    /// Signal quality, defined for every signal.
    Quality,
}

/// One feature of the set: stable name, unit and definition.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FeatureInfo {
    /// Stable snake_case name, the key used on the wire and in model manifests.
    pub name: String,
    /// Unit of the value (`"1"` for dimensionless).
    pub unit: String,
    /// Which signal it comes from.
    pub source: FeatureSource,
    /// Definition, precise enough to re-implement.
    pub definition: String,
}

/// Versions a host app reports in bug reports and checks against model manifests.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VersionInfo {
    /// Version of the vitalcore library (semver).
    pub sdk_version: String,
    /// Feature set the library computes (models must be trained on the same one).
    pub feature_set_version: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogueError {
    #[error("no feature of set v1 has this name")]
    UnknownFeature,
}

impl From<&FeatureDef> for FeatureInfo {
    fn from(d: &FeatureDef) -> Self {
        Self {
            name: d.name.to_owned(),
            unit: d.unit.to_owned(),
            source: match d.source {
                Source::Cardiac => FeatureSource::Cardiac,
                Source::Accel => FeatureSource::Accel,
                Source::Quality => FeatureSource::Quality,
            },
            definition: d.definition.to_owned(),
        }
    }
}

/// Library and feature set versions.
#[uniffi::export]
pub fn version_info() -> VersionInfo {
    VersionInfo {
        sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        feature_set_version: vitalcore_signal::FEATURE_SET_VERSION.to_owned(),
    }
}

/// Number of features in set `v1`. The cheapest exported call, the baseline of the
/// per-call overhead benchmark.
#[uniffi::export]
pub fn feature_count() -> u32 {
    // The table is a compile-time constant of a few dozen entries.
    u32::try_from(vitalcore_signal::FEATURES_V1.len()).unwrap_or(u32::MAX)
}

/// All features of set `v1`, in canonical order (the order of model input columns).
#[uniffi::export]
pub fn features_v1() -> Vec<FeatureInfo> {
    vitalcore_signal::FEATURES_V1
        .iter()
        .map(FeatureInfo::from)
        .collect()
}

/// One feature of set `v1` by name; `InvalidInput` if there is none.
#[uniffi::export]
pub fn feature_info(name: String) -> Result<FeatureInfo, crate::VitalcoreError> {
    vitalcore_signal::feature_def(&name)
        .map(FeatureInfo::from)
        .ok_or_else(|| CatalogueError::UnknownFeature.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_mirrors_the_core_table_in_order() {
        let infos = features_v1();
        assert_eq!(infos.len(), vitalcore_signal::FEATURES_V1.len());
        for (info, def) in infos.iter().zip(vitalcore_signal::FEATURES_V1) {
            assert_eq!(info.name, def.name);
            assert_eq!(info.unit, def.unit);
            assert_eq!(info.definition, def.definition);
        }
        assert_eq!(feature_count() as usize, infos.len());
    }

    #[test]
    fn unknown_feature_is_invalid_input_without_echoing_the_name() {
        let err = feature_info("secret-patient-name".into()).unwrap_err();
        match err {
            crate::VitalcoreError::InvalidInput { reason } => {
                assert!(!reason.contains("secret"), "{reason}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}
