//! Privacy before anything leaves the device: consent gating per purpose and anonymization of
//! outbox records into wire [`FeatureRecord`]s and [`OutcomeLabel`]s.
//!
//! What goes out is built field by field from an allow-list, never by copying the local record
//! and removing things: a field the app adds tomorrow (a device id, a note) stays on the device
//! unless someone adds it here on purpose.

use std::collections::{BTreeMap, BTreeSet};

use ring::hmac;
use serde::Deserialize;
use vitalcore_protocol::{
    feature_in, feature_set, is_valid_kind, is_valid_label, is_valid_study, ConsentPurpose,
    FeatureRecord, OutcomeLabel, SUBJECT_PROOF_CONTEXT,
};
use zeroize::Zeroizing;

use crate::store::{Purpose, Store, StoreError, SubjectId};

/// Why a record could not be prepared for upload.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The stored record is not a record this version understands (it is quarantined).
    #[error("outbox record is not a valid check record")]
    MalformedRecord,
    /// No allow-listed feature is left after filtering (nothing worth sending).
    #[error("outbox record has no allow-listed feature")]
    NoFeatures,
    /// The purpose name has no wire purpose.
    #[error("purpose has no upload meaning")]
    UnknownPurpose,
    /// The local differential privacy budget of the purpose is spent: its records stay on the
    /// device.
    #[error("the local differential privacy budget of this purpose is spent")]
    BudgetExhausted,
    /// A local differential privacy setting is unusable; names it.
    #[error("invalid local differential privacy setting: {0}")]
    InvalidDp(&'static str),
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A purpose as the app names it, in the store's vocabulary: `research:<study>` (the public
/// spelling of a named study) becomes `research_<study>`, since stored purposes are
/// `[a-z0-9_]`; every other name is taken as it is. Both spellings name the same purpose, and
/// consents read back use the stored one.
pub fn purpose_from_name(name: &str) -> Result<Purpose, PrivacyError> {
    let stored = match name.strip_prefix("research:") {
        Some(study) if !study.is_empty() => format!("research_{study}"),
        Some(_) => return Err(PrivacyError::UnknownPurpose),
        None => name.to_owned(),
    };
    Purpose::new(stored).map_err(|_| PrivacyError::UnknownPurpose)
}

/// What a local purpose means on the wire: `model_training`, `partner_sharing`, `research`
/// (the app's own study, named by the [`AnonymizationPolicy`]) or `research_<study>` (the
/// store's purpose vocabulary is `[a-z0-9_]`, so the study is the suffix after `research_`).
pub fn wire_purpose(p: &Purpose) -> Result<(ConsentPurpose, Option<&str>), PrivacyError> {
    match p.as_str() {
        "model_training" => Ok((ConsentPurpose::ModelTraining, None)),
        "partner_sharing" => Ok((ConsentPurpose::PartnerSharing, None)),
        "research" => Ok((ConsentPurpose::Research, None)),
        s => match s.strip_prefix("research_") {
            Some(study) if !study.is_empty() => Ok((ConsentPurpose::Research, Some(study))),
            _ => Err(PrivacyError::UnknownPurpose),
        },
    }
}

/// Purposes among `candidates` the subject currently consents to (latest decision granted).
pub fn consented(
    store: &Store,
    subject: &SubjectId,
    candidates: &[Purpose],
) -> Result<Vec<Purpose>, PrivacyError> {
    let mut out = Vec::new();
    for p in candidates {
        if store.consent(subject, p)?.is_some_and(|d| d.granted) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Laplace noise for one feature: the value is clamped to `lo..=hi`, then noise of scale
/// `(hi - lo) / epsilon` is added, which makes the released value `epsilon`-differentially
/// private on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpFeature {
    /// Lower clamp.
    pub lo: f64,
    /// Upper clamp.
    pub hi: f64,
    /// Privacy loss of releasing this feature once.
    pub epsilon: f64,
}

/// Local differential privacy on chosen features, with a budget per subject and purpose that
/// the store persists: every uploaded record spends [`LocalDp::record_epsilon`], once, however
/// often it is re-sent. When the next record would exceed the budget it stays on the device
/// and sync fails with [`PrivacyError::BudgetExhausted`].
///
/// The noise of a record is drawn from a keyed pseudo-random function of the record (the
/// device's pseudonym key, which never leaves it), so a re-sent batch is byte-identical (the
/// server refuses a different body under the same idempotency key) and repeating a record
/// never reveals fresh noise to average out.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDp {
    features: BTreeMap<String, DpFeature>,
    budget: f64,
}

impl LocalDp {
    /// No noised feature yet; `budget` is the total epsilon a subject may spend per purpose.
    pub fn new(budget: f64) -> Result<Self, PrivacyError> {
        if !(budget.is_finite() && budget > 0.0) {
            return Err(PrivacyError::InvalidDp("budget must be finite and > 0"));
        }
        Ok(Self {
            features: BTreeMap::new(),
            budget,
        })
    }

    /// Adds Laplace noise to feature `name` (clamped to `lo..=hi`) at `epsilon`.
    pub fn feature(
        mut self,
        name: impl Into<String>,
        lo: f64,
        hi: f64,
        epsilon: f64,
    ) -> Result<Self, PrivacyError> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(PrivacyError::InvalidDp(
                "clamp bounds must be finite with lo < hi",
            ));
        }
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(PrivacyError::InvalidDp("epsilon must be finite and > 0"));
        }
        self.features
            .insert(name.into(), DpFeature { lo, hi, epsilon });
        Ok(self)
    }

    /// Privacy loss of one uploaded record: the sum over the noised features (basic
    /// composition).
    pub fn record_epsilon(&self) -> f64 {
        self.features.values().map(|f| f.epsilon).sum()
    }

    /// Total epsilon per subject and purpose.
    pub fn budget(&self) -> f64 {
        self.budget
    }

    /// The noised features.
    pub fn features(&self) -> &BTreeMap<String, DpFeature> {
        &self.features
    }
}

/// Laplace(0, `scale`) from a uniform `u` in `(0, 1)` by the inverse CDF.
pub fn laplace(u: f64, scale: f64) -> f64 {
    let p = u - 0.5;
    -scale * p.signum() * (1.0 - 2.0 * p.abs()).ln()
}

/// Generalization rules. Defaults: the feature set v1 names, timestamps to the hour, no
/// differential privacy.
#[derive(Debug, Clone)]
pub struct AnonymizationPolicy {
    allowed_features: BTreeSet<String>,
    allowed_labels: BTreeSet<String>,
    time_granularity_secs: i64,
    study: String,
    local_dp: Option<LocalDp>,
}

impl AnonymizationPolicy {
    /// Policy for `study` (records whose purpose names no study are filed under it); allows
    /// every feature set v1 name, coarsens time to the hour.
    pub fn new(study: impl Into<String>) -> Self {
        Self {
            allowed_features: vitalcore_signal::FEATURES_V1
                .iter()
                .map(|f| f.name.to_owned())
                .collect(),
            allowed_labels: BTreeSet::new(),
            time_granularity_secs: 3600,
            study: study.into(),
            local_dp: None,
        }
    }

    /// Adds local differential privacy (see [`LocalDp`]). Default: none.
    pub fn local_dp(mut self, dp: LocalDp) -> Self {
        self.local_dp = Some(dp);
        self
    }

    /// Replaces the feature allow-list.
    pub fn allow_features<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.allowed_features = names.into_iter().map(Into::into).collect();
        self
    }

    /// Outcome label names that may leave the device (class names such as `irregular`, never
    /// free text). Default: none, so no label is uploaded until the app names its classes.
    pub fn allow_labels<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.allowed_labels = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether a label `name` with `value` may be uploaded: its name is allow-listed and it
    /// asserts the class (`value` 1). Anything else (a score, a negative finding) stays local.
    pub fn label_uploads(&self, name: &str, value: f64) -> bool {
        value == 1.0 && self.allowed_labels.contains(name) && is_valid_label(name)
    }

    /// Time granularity in seconds, at least one hour (the wire field is an hour); default 3600.
    pub fn time_granularity_secs(mut self, secs: i64) -> Self {
        self.time_granularity_secs = secs.max(3600);
        self
    }
}

/// The local record shape read from the outbox payload. Unknown fields are ignored on purpose:
/// only what is named here can ever be read, and of that only generalized values go out.
#[derive(Deserialize)]
struct LocalRecord {
    kind: String,
    feature_set: String,
    #[serde(default)]
    started_at_ms: Option<i64>,
    #[serde(default)]
    day: Option<i64>,
    #[serde(default)]
    sqi: Option<f64>,
    #[serde(default)]
    quality: Option<f64>,
    features: BTreeMap<String, f64>,
    #[serde(default)]
    age_years: Option<u32>,
}

/// The outbox payload of an outcome label: only the class name travels; the value, source and
/// time of the local label stay on the device.
#[derive(serde::Serialize, Deserialize)]
struct LocalLabel {
    outcome_label: String,
}

/// The outbox payload that queues the upload of label `name` (see [`Anonymizer::label`]).
pub fn label_payload(name: &str) -> Vec<u8> {
    // Serializing a struct of one string cannot fail.
    serde_json::to_vec(&LocalLabel {
        outcome_label: name.to_owned(),
    })
    .unwrap_or_default()
}

/// Whether an outbox payload is a queued label rather than a check record.
pub fn is_label_payload(payload: &[u8]) -> bool {
    serde_json::from_slice::<LocalLabel>(payload).is_ok()
}

/// Age generalized to a 5-year band, `90+` above 89.
pub fn age_band(years: u32) -> String {
    if years >= 90 {
        "90+".to_owned()
    } else {
        let lo = years / 5 * 5;
        format!("{lo}-{}", lo + 4)
    }
}

/// Seconds coarsened down to a multiple of `granularity` (floor, also before 1970).
pub fn coarsen(secs: i64, granularity: i64) -> i64 {
    secs.div_euclid(granularity) * granularity
}

/// Turns outbox payloads into anonymized wire records.
pub struct Anonymizer {
    key: hmac::Key,
    policy: AnonymizationPolicy,
}

impl std::fmt::Debug for Anonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anonymizer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Anonymizer {
    /// `secret` keys the pseudonyms: it never leaves the device, so the server cannot link a
    /// pseudonym to the subject, and two purposes give two unrelated pseudonyms.
    pub fn new(secret: Zeroizing<[u8; 32]>, policy: AnonymizationPolicy) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()),
            policy,
        }
    }

    fn tag(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            // Length-prefixed so ("ab","c") and ("a","bc") differ.
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        hex::encode(&ctx.sign().as_ref()[..16])
    }

    /// The local differential privacy in force, if any.
    pub fn local_dp(&self) -> Option<&LocalDp> {
        self.policy.local_dp.as_ref()
    }

    /// A uniform number in `(0, 1)`, a keyed function of `parts`.
    fn unit(&self, parts: &[&[u8]]) -> f64 {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&ctx.sign().as_ref()[..8]);
        ((u64::from_be_bytes(b) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// The possession proof of `pseudonym`: HMAC-SHA256 under the pseudonym key over
    /// [`SUBJECT_PROOF_CONTEXT`] and the pseudonym (length-prefixed), as 64 hex digits. The
    /// server binds the pseudonym to the first proof it accepts and from then on stores or
    /// erases nothing for it without the same proof. It comes from the key, not from the
    /// device credential, so a device that enrolls again (an app reinstall with the store
    /// restored) still proves its subjects; the server keeps only its SHA-256.
    pub fn subject_proof(&self, pseudonym: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in [SUBJECT_PROOF_CONTEXT, pseudonym.as_bytes()] {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        hex::encode(ctx.sign().as_ref())
    }

    /// Pseudonymous subject id for one purpose.
    pub fn pseudonym(&self, subject: &SubjectId, purpose: &Purpose) -> String {
        self.tag(&[
            b"subject",
            purpose.as_str().as_bytes(),
            subject.as_str().as_bytes(),
        ])
    }

    /// The wire record id of the local record `local_id` under `purpose`: keyed, so stable
    /// across retries and unlinkable to the local id.
    pub fn record_id(&self, purpose: &Purpose, local_id: &[u8]) -> String {
        self.tag(&[b"record", purpose.as_str().as_bytes(), local_id])
    }

    /// Builds the wire record for one outbox row; `local_id` (the outbox row id) is turned into
    /// a keyed record id, stable across retries and unlinkable to the local row.
    pub fn anonymize(
        &self,
        subject: &SubjectId,
        purpose: &Purpose,
        local_id: &[u8],
        payload: &[u8],
    ) -> Result<FeatureRecord, PrivacyError> {
        self.anonymize_as(subject, purpose, local_id, local_id, payload)
    }

    /// [`Anonymizer::anonymize`] with the wire record id derived from `record_key` (the id of
    /// the check the row came from), so a label queued later for the same check names the same
    /// wire record; `local_id` (the outbox row) still keys the noise of local DP.
    pub fn anonymize_as(
        &self,
        subject: &SubjectId,
        purpose: &Purpose,
        local_id: &[u8],
        record_key: &[u8],
        payload: &[u8],
    ) -> Result<FeatureRecord, PrivacyError> {
        let (_, study) = wire_purpose(purpose)?;
        let local: LocalRecord =
            serde_json::from_slice(payload).map_err(|_| PrivacyError::MalformedRecord)?;
        // Only names of the feature set the record names, with values the server accepts
        // (vitalcore-protocol's table, the one the server checks against).
        if feature_set(&local.feature_set).is_none() {
            return Err(PrivacyError::MalformedRecord);
        }
        let def = |k: &str| feature_in(&local.feature_set, k);
        let mut features: BTreeMap<String, f64> = local
            .features
            .into_iter()
            .filter(|(k, v)| {
                self.policy.allowed_features.contains(k) && def(k).is_some_and(|d| d.accepts(*v))
            })
            .collect();
        if let Some(dp) = &self.policy.local_dp {
            for (name, f) in &dp.features {
                if let Some(v) = features.get_mut(name) {
                    let u = self.unit(&[
                        b"ldp",
                        purpose.as_str().as_bytes(),
                        local_id,
                        name.as_bytes(),
                    ]);
                    let noised = v.clamp(f.lo, f.hi) + laplace(u, (f.hi - f.lo) / f.epsilon);
                    // A draw beyond the interval the server accepts (only at a tiny epsilon)
                    // is clamped onto it: post-processing, so the guarantee is unchanged.
                    let (lo, hi) = def(name).map_or((f64::MIN, f64::MAX), |d| d.accepted());
                    *v = noised.clamp(lo, hi);
                }
            }
        }
        if features.is_empty() {
            return Err(PrivacyError::NoFeatures);
        }
        let secs = match (local.started_at_ms, local.day) {
            (Some(ms), _) => ms.div_euclid(1000),
            (None, Some(day)) => day.saturating_mul(86_400),
            (None, None) => return Err(PrivacyError::MalformedRecord),
        };
        let quality = local.sqi.or(local.quality).unwrap_or(0.0);
        if !(0.0..=1.0).contains(&quality)
            || !short_token(&local.kind)
            || !is_valid_kind(&local.kind)
        {
            return Err(PrivacyError::MalformedRecord);
        }
        if !short_token(&local.feature_set) {
            return Err(PrivacyError::MalformedRecord);
        }
        let study = study.unwrap_or(&self.policy.study);
        if !is_valid_study(study) {
            return Err(PrivacyError::MalformedRecord);
        }
        Ok(FeatureRecord {
            record_id: self.record_id(purpose, record_key),
            subject: self.pseudonym(subject, purpose),
            study: study.to_owned(),
            kind: local.kind,
            feature_set: local.feature_set,
            captured_hour: coarsen(secs, self.policy.time_granularity_secs),
            age_band: local.age_years.map(age_band),
            quality,
            features,
        })
    }
}

impl Anonymizer {
    /// Builds the wire label for a queued label payload of the check `record_key`: the same
    /// pseudonym and wire record id as the check's record under `purpose`, and the class name
    /// only if the policy allow-lists it.
    pub fn label(
        &self,
        subject: &SubjectId,
        purpose: &Purpose,
        record_key: &[u8],
        payload: &[u8],
    ) -> Result<OutcomeLabel, PrivacyError> {
        wire_purpose(purpose)?;
        let local: LocalLabel =
            serde_json::from_slice(payload).map_err(|_| PrivacyError::MalformedRecord)?;
        if !self.policy.label_uploads(&local.outcome_label, 1.0) {
            return Err(PrivacyError::MalformedRecord);
        }
        Ok(OutcomeLabel {
            subject: self.pseudonym(subject, purpose),
            record_id: self.record_id(purpose, record_key),
            label: local.outcome_label,
        })
    }
}

/// Kinds and feature-set versions are a small vocabulary; anything else (free text smuggled in
/// a field) is refused rather than sent.
fn short_token(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn anon() -> Anonymizer {
        Anonymizer::new(
            Zeroizing::new([7u8; 32]),
            AnonymizationPolicy::new("rhythm").allow_features(["hr_mean", "rmssd", "hr"]),
        )
    }

    #[test]
    fn age_bands_are_five_years_with_90_plus() {
        assert_eq!(age_band(0), "0-4");
        assert_eq!(age_band(44), "40-44");
        assert_eq!(age_band(45), "45-49");
        assert_eq!(age_band(89), "85-89");
        assert_eq!(age_band(90), "90+");
        assert_eq!(age_band(120), "90+");
    }

    #[test]
    fn only_allow_listed_fields_leave() {
        let s = SubjectId::new("alice@example.org").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let payload = br#"{"kind":"ppg","feature_set":"v1","started_at_ms":1790001234567,
            "features":{"hr_mean":61.0,"rmssd":40.0,"hr":1.0,"secret_feature":1.0},"sqi":0.9,"age_years":47,
            "device_id":"IMEI-356938035643809","note":"felt dizzy at work","ip":"10.1.2.3"}"#;
        let r = anon().anonymize(&s, &p, b"row1", payload).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        for canary in [
            "alice",
            "IMEI",
            "dizzy",
            "10.1.2.3",
            "secret_feature",
            "\"hr\"",
            "1790001234",
        ] {
            assert!(!json.contains(canary), "{canary} leaked: {json}");
        }
        // `hr` is allow-listed by the app but not a feature set v1 name: it stays too.
        assert_eq!(r.features.len(), 2);
        assert_eq!(r.age_band.as_deref(), Some("45-49"));
        assert_eq!(r.captured_hour % 3600, 0);
        assert!(1_790_001_234 - r.captured_hour < 3600);
    }

    #[test]
    fn a_label_names_its_check_as_the_record_does_and_only_allow_listed_classes_leave() {
        let s = SubjectId::new("alice@example.org").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let a = Anonymizer::new(
            Zeroizing::new([7u8; 32]),
            AnonymizationPolicy::new("rhythm").allow_labels(["regular", "irregular"]),
        );
        let payload = br#"{"kind":"ppg","feature_set":"v1","started_at_ms":1790001234567,
            "features":{"hr_mean":61.0},"sqi":0.9}"#;
        let r = a
            .anonymize_as(&s, &p, b"outbox-row", b"check-1", payload)
            .unwrap();
        let l = a
            .label(&s, &p, b"check-1", &label_payload("irregular"))
            .unwrap();
        assert_eq!((&l.subject, &l.record_id), (&r.subject, &r.record_id));
        assert_eq!(l.label, "irregular");
        // Another check, another purpose: other ids.
        let other = a
            .label(&s, &p, b"check-2", &label_payload("regular"))
            .unwrap();
        assert_ne!(other.record_id, r.record_id);
        let research = Purpose::new("research").unwrap();
        let l2 = a
            .label(&s, &research, b"check-1", &label_payload("irregular"))
            .unwrap();
        assert_ne!((l2.subject, l2.record_id), (l.subject, l.record_id));
        // Free text, a class the app did not list, or a record payload: refused.
        for bad in [
            label_payload("felt dizzy at work"),
            label_payload("afib"),
            payload.to_vec(),
        ] {
            assert!(matches!(
                a.label(&s, &p, b"check-1", &bad),
                Err(PrivacyError::MalformedRecord)
            ));
        }
        assert!(is_label_payload(&label_payload("regular")));
        assert!(!is_label_payload(payload));
        let policy = AnonymizationPolicy::new("-").allow_labels(["irregular"]);
        assert!(policy.label_uploads("irregular", 1.0));
        assert!(
            !policy.label_uploads("irregular", 0.0),
            "a negative finding is not the class"
        );
        assert!(!policy.label_uploads("regular", 1.0));
        assert!(!AnonymizationPolicy::new("-").label_uploads("irregular", 1.0));
    }

    #[test]
    fn pseudonyms_differ_per_purpose_and_per_key() {
        let s = SubjectId::new("subject-1").unwrap();
        let a = anon();
        let p1 = Purpose::new("model_training").unwrap();
        let p2 = Purpose::new("research_sleep").unwrap();
        assert_ne!(a.pseudonym(&s, &p1), a.pseudonym(&s, &p2));
        assert_eq!(a.pseudonym(&s, &p1), anon().pseudonym(&s, &p1));
        let other = Anonymizer::new(Zeroizing::new([8u8; 32]), AnonymizationPolicy::new("x"));
        assert_ne!(a.pseudonym(&s, &p1), other.pseudonym(&s, &p1));
    }

    #[test]
    fn only_feature_set_names_with_accepted_values_leave_and_only_known_sets() {
        let s = SubjectId::new("s").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let a = Anonymizer::new(
            Zeroizing::new([7u8; 32]),
            AnonymizationPolicy::new("rhythm"),
        );
        let payload = br#"{"kind":"ppg","feature_set":"v1","day":20000,
            "features":{"hr_mean":60.0,"rmssd":1e12,"patient_ssn_078051120":1.0,"sqi":0.9}}"#;
        let r = a.anonymize(&s, &p, b"r", payload).unwrap();
        assert_eq!(r.features.keys().collect::<Vec<_>>(), ["hr_mean", "sqi"]);
        for bad in [
            br#"{"kind":"ppg","feature_set":"v9","day":1,"features":{"hr_mean":60.0}}"#.to_vec(),
            br#"{"kind":"ekg","feature_set":"v1","day":1,"features":{"hr_mean":60.0}}"#.to_vec(),
        ] {
            assert!(matches!(
                a.anonymize(&s, &p, b"r", &bad),
                Err(PrivacyError::MalformedRecord)
            ));
        }
        let bad_study = Anonymizer::new(
            Zeroizing::new([7u8; 32]),
            AnonymizationPolicy::new("John Smith"),
        );
        assert!(matches!(
            bad_study.anonymize(&s, &p, b"r", payload),
            Err(PrivacyError::MalformedRecord)
        ));
    }

    #[test]
    fn subject_proofs_are_keyed_and_differ_from_the_pseudonym() {
        let s = SubjectId::new("subject-1").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let a = anon();
        let ps = a.pseudonym(&s, &p);
        let proof = a.subject_proof(&ps);
        assert!(vitalcore_protocol::is_valid_subject_proof(&proof));
        assert_eq!(proof, anon().subject_proof(&ps), "stable for the same key");
        assert!(!proof.contains(&ps));
        let other = Anonymizer::new(Zeroizing::new([8u8; 32]), AnonymizationPolicy::new("x"));
        assert_ne!(
            proof,
            other.subject_proof(&ps),
            "another key cannot prove it"
        );
        assert_ne!(
            proof,
            a.subject_proof(&a.pseudonym(&s, &Purpose::new("research").unwrap()))
        );
    }

    #[test]
    fn free_text_in_kind_is_refused() {
        let s = SubjectId::new("s").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let payload =
            br#"{"kind":"John Smith's ppg","feature_set":"v1","day":20000,"features":{"hr_mean":60.0}}"#;
        assert!(matches!(
            anon().anonymize(&s, &p, b"r", payload),
            Err(PrivacyError::MalformedRecord)
        ));
    }

    #[test]
    fn research_purpose_names_the_study() {
        let p = Purpose::new("research_sleep").unwrap();
        assert_eq!(
            wire_purpose(&p).unwrap(),
            (ConsentPurpose::Research, Some("sleep"))
        );
        assert_eq!(
            wire_purpose(&Purpose::new("research").unwrap()).unwrap(),
            (ConsentPurpose::Research, None)
        );
        assert!(wire_purpose(&Purpose::care()).is_err());
        assert!(wire_purpose(&Purpose::new("research_").unwrap()).is_err());
        assert!(wire_purpose(&Purpose::new("marketing").unwrap()).is_err());
    }

    #[test]
    fn research_colon_study_is_the_stored_research_underscore_study() {
        let p = purpose_from_name("research:sleep").unwrap();
        assert_eq!(p.as_str(), "research_sleep");
        assert_eq!(p, purpose_from_name("research_sleep").unwrap());
        assert_eq!(
            wire_purpose(&p).unwrap(),
            (ConsentPurpose::Research, Some("sleep"))
        );
        assert_eq!(purpose_from_name("research").unwrap().as_str(), "research");
        assert_eq!(
            purpose_from_name("model_training").unwrap().as_str(),
            "model_training"
        );
        for bad in [
            "research:",
            "research:Sleep",
            "research:a:b",
            "research:sleep study",
            "research:-x",
            "Research:sleep",
            "",
        ] {
            assert!(
                matches!(purpose_from_name(bad), Err(PrivacyError::UnknownPurpose)),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn laplace_noise_is_deterministic_per_record_and_has_the_laplace_spread() {
        let dp = LocalDp::new(10.0)
            .unwrap()
            .feature("hr_mean", 30.0, 230.0, 1.0)
            .unwrap();
        let a = Anonymizer::new(
            Zeroizing::new([7u8; 32]),
            AnonymizationPolicy::new("s").local_dp(dp.clone()),
        );
        let s = SubjectId::new("s").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let payload =
            br#"{"kind":"ppg","feature_set":"v1","day":20000,"features":{"hr_mean":60.0,"rmssd":40.0}}"#;
        let r1 = a.anonymize(&s, &p, b"row-1", payload).unwrap();
        assert_eq!(r1, a.anonymize(&s, &p, b"row-1", payload).unwrap());
        assert_eq!(
            r1.features["rmssd"], 40.0,
            "only chosen features are noised"
        );
        // Over many records the noise of scale b = 200 has mean ~0 and mean |x| ~ b.
        let n = 4000;
        let noise: Vec<f64> = (0..n)
            .map(|i: u32| {
                a.anonymize(&s, &p, &i.to_be_bytes(), payload)
                    .unwrap()
                    .features["hr_mean"]
                    - 60.0
            })
            .collect();
        let mean = noise.iter().sum::<f64>() / n as f64;
        let mad = noise.iter().map(|x| x.abs()).sum::<f64>() / n as f64;
        assert!(mean.abs() < 15.0, "mean {mean}");
        assert!((mad - 200.0).abs() < 15.0, "mean |noise| {mad}");
        assert_eq!(dp.record_epsilon(), 1.0);
        assert!(LocalDp::new(0.0).is_err());
        assert!(LocalDp::new(1.0)
            .unwrap()
            .feature("hr", 5.0, 5.0, 1.0)
            .is_err());
        assert!(LocalDp::new(1.0)
            .unwrap()
            .feature("hr", 0.0, 5.0, f64::NAN)
            .is_err());
    }

    #[test]
    fn values_are_clamped_before_noise() {
        // With a huge epsilon the noise vanishes and the clamp shows.
        let dp = LocalDp::new(1e9)
            .unwrap()
            .feature("hr_mean", 40.0, 180.0, 1e9)
            .unwrap();
        let a = Anonymizer::new(
            Zeroizing::new([1u8; 32]),
            AnonymizationPolicy::new("s").local_dp(dp),
        );
        let s = SubjectId::new("s").unwrap();
        let p = Purpose::new("model_training").unwrap();
        let payload = br#"{"kind":"ppg","feature_set":"v1","day":1,"features":{"hr_mean":250.0}}"#;
        let r = a.anonymize(&s, &p, b"r", payload).unwrap();
        assert!((r.features["hr_mean"] - 180.0).abs() < 1e-3);
    }

    proptest! {
        /// The inverse CDF maps every open-interval uniform to a finite value whose sign
        /// follows `u - 1/2` and whose magnitude grows with the scale.
        #[test]
        fn laplace_is_finite_and_symmetric(u in 1e-6f64..(1.0 - 1e-6), scale in 1e-6f64..1e6) {
            let x = laplace(u, scale);
            prop_assert!(x.is_finite());
            // 1 - u is rounded, hence the tolerance.
            prop_assert!((laplace(1.0 - u, scale) + x).abs() <= 1e-8 * scale);
            if u > 0.5 { prop_assert!(x >= 0.0) } else { prop_assert!(x <= 0.0) }
            prop_assert!((laplace(u, 2.0 * scale) - 2.0 * x).abs() <= 1e-9 * x.abs().max(1.0));
        }

        /// Any study name the store can hold is accepted in both spellings, as the same
        /// purpose, and goes on the wire as that study.
        #[test]
        fn research_study_spellings_agree(study in "[a-z0-9_]{1,23}") {
            let colon = purpose_from_name(&format!("research:{study}")).unwrap();
            prop_assert_eq!(&colon, &purpose_from_name(&format!("research_{study}")).unwrap());
            prop_assert_eq!(wire_purpose(&colon).unwrap(), (ConsentPurpose::Research, Some(study.as_str())));
        }

        /// Arbitrary app input never panics; whatever is accepted is a valid stored name.
        #[test]
        fn arbitrary_purpose_names_are_refused_or_stored_names(name in "\\PC{0,40}") {
            if let Ok(p) = purpose_from_name(&name) {
                prop_assert!(p.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                prop_assert!(!p.as_str().contains(':'));
            }
        }

        /// Untrusted payload bytes never panic, and whatever comes out is generalized.
        #[test]
        fn arbitrary_payloads_are_refused_or_generalized(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                                          ms in any::<i64>(), age in 0u32..200) {
            let s = SubjectId::new("s").unwrap();
            let p = Purpose::new("model_training").unwrap();
            let _ = anon().anonymize(&s, &p, b"r", &bytes);
            let payload = format!(r#"{{"kind":"ppg","feature_set":"v1","started_at_ms":{ms},"features":{{"hr_mean":60.0}},"age_years":{age}}}"#);
            let r = anon().anonymize(&s, &p, b"r", payload.as_bytes()).unwrap();
            prop_assert_eq!(r.captured_hour.rem_euclid(3600), 0);
            prop_assert!(ms.div_euclid(1000) - r.captured_hour < 3600);
            let band = r.age_band.unwrap();
            prop_assert!(band == "90+" || band.len() <= 5);
        }
    }
}
