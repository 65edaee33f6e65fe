//! [`FeatureVector`]: feature set v1 values keyed by their contract names.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::SignalError;
use crate::feature_set::{FeatureDef, Source, FEATURES_V1};

/// Values of the v1 features that apply to one analysis, in canonical order.
///
/// A feature that could not be computed is `None` (JSON `null`); the analysis that built
/// the vector says why in its `unavailable` list. Serialises as a map `name -> value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureVector {
    entries: Vec<(&'static FeatureDef, Option<f64>)>,
}

impl FeatureVector {
    /// A vector holding every v1 feature of the given sources, all unset.
    pub fn for_sources(sources: &[Source]) -> Self {
        Self {
            entries: FEATURES_V1
                .iter()
                .filter(|f| sources.contains(&f.source))
                .map(|f| (f, None))
                .collect(),
        }
    }

    /// Value of a feature; `None` if unset or not part of this vector.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(f, _)| f.name == name)
            .and_then(|(_, v)| *v)
    }

    /// Sets a feature. Non-finite values are stored as `None`: a feature is a number or
    /// absent, never NaN. Returns false if the name is not part of this vector.
    pub fn set(&mut self, name: &str, value: Option<f64>) -> bool {
        match self.entries.iter_mut().find(|(f, _)| f.name == name) {
            Some(entry) => {
                entry.1 = value.filter(|v| v.is_finite());
                true
            }
            None => false,
        }
    }

    /// `(name, value)` pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<f64>)> + '_ {
        self.entries.iter().map(|(f, v)| (f.name, *v))
    }

    /// Number of features in the vector.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the vector holds no features.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for FeatureVector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (f, v) in &self.entries {
            map.serialize_entry(f.name, v)?;
        }
        map.end()
    }
}

/// A feature that could not be computed, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unavailable {
    /// Feature name (v1).
    pub feature: &'static str,
    /// The error, as text.
    pub reason: String,
}

impl Unavailable {
    pub(crate) fn new(feature: &'static str, err: &SignalError) -> Self {
        Self {
            feature,
            reason: err.to_string(),
        }
    }
}
