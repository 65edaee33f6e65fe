//! Partner API for other apps of the ecosystem: scoped API keys (studies, features, records or
//! aggregates only), cursor pagination, and aggregates suppressed below `min_group_size`
//! distinct subjects. Partners never see our subject ids, only a per-key pseudonym.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use vitalcore_protocol::ConsentPurpose;

use crate::auth::{sha256_hex, Partner};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::RecordQuery;

/// Query of `GET /v1/partner/records`.
#[derive(Debug, Deserialize)]
pub struct RecordsQuery {
    /// Study (must be in the key's scope).
    pub study: String,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: i64,
    /// Page size, 1..=500 (default 100).
    pub limit: Option<i64>,
}

/// One record as a partner sees it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PartnerRecord {
    /// Per-key pseudonym of the subject.
    pub subject: String,
    /// Kind of check.
    pub kind: String,
    /// Capture hour.
    pub captured_hour: i64,
    /// Age band.
    pub age_band: Option<String>,
    /// Only the features in the key's scope.
    pub features: BTreeMap<String, f64>,
}

/// A page of records.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordsPage {
    /// Records.
    pub records: Vec<PartnerRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

pub(crate) async fn records(
    State(state): State<AppState>,
    Partner(key): Partner,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RecordsPage>, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::Malformed)?;
    if !key.scopes.records || !key.scopes.studies.contains(&q.study) {
        return Err(ApiError::Forbidden);
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Invalid("limit must be within 1..=500"));
    }
    let rows = state
        .store
        .records(&RecordQuery {
            study: Some(q.study),
            purpose: ConsentPurpose::PartnerSharing,
            after_seq: q.cursor.max(0),
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        page.last().map(|r| r.seq)
    } else {
        None
    };
    let records = page
        .into_iter()
        .map(|r| PartnerRecord {
            subject: sha256_hex(format!("{}\0{}", key.key_id, r.record.subject).as_bytes())[..16]
                .to_owned(),
            kind: r.record.kind,
            captured_hour: r.record.captured_hour,
            age_band: r.record.age_band,
            features: r
                .record
                .features
                .into_iter()
                .filter(|(k, _)| key.scopes.features.contains(k))
                .collect(),
        })
        .collect();
    Ok(Json(RecordsPage {
        records,
        next_cursor,
    }))
}

/// Query of `GET /v1/partner/aggregates`.
#[derive(Debug, Deserialize)]
pub struct AggregateQuery {
    /// Study (must be in the key's scope).
    pub study: String,
    /// Feature (must be in the key's scope).
    pub feature: String,
    /// `kind` or `age_band`.
    pub group_by: String,
}

/// One reported group.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// Group value (`"unknown"` when the field is absent).
    pub group: String,
    /// Distinct subjects (at least the minimum group size).
    pub subjects: u64,
    /// Records with the feature.
    pub records: u64,
    /// Mean of the feature.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// Aggregates answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Aggregates {
    /// Groups with at least `min_group_size` subjects.
    pub groups: Vec<Group>,
    /// How many groups were withheld for being too small.
    pub suppressed_groups: u64,
    /// The k in force.
    pub min_group_size: usize,
}

pub(crate) async fn aggregates(
    State(state): State<AppState>,
    Partner(key): Partner,
    q: Result<Query<AggregateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Aggregates>, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::Malformed)?;
    if !key.scopes.studies.contains(&q.study) || !key.scopes.features.contains(&q.feature) {
        return Err(ApiError::Forbidden);
    }
    if q.group_by != "kind" && q.group_by != "age_band" {
        return Err(ApiError::Invalid("group_by must be kind or age_band"));
    }
    struct Acc {
        subjects: BTreeSet<String>,
        n: u64,
        sum: f64,
        min: f64,
        max: f64,
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut after_seq = 0;
    loop {
        let page = state
            .store
            .records(&RecordQuery {
                study: Some(q.study.clone()),
                purpose: ConsentPurpose::PartnerSharing,
                after_seq,
                limit: 5000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        let n = page.len();
        for r in page {
            let Some(v) = r.record.features.get(&q.feature).copied() else {
                continue;
            };
            let g = if q.group_by == "kind" {
                r.record.kind
            } else {
                r.record.age_band.unwrap_or_else(|| "unknown".into())
            };
            let acc = groups.entry(g).or_insert_with(|| Acc {
                subjects: BTreeSet::new(),
                n: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            });
            acc.subjects.insert(r.record.subject);
            acc.n += 1;
            acc.sum += v;
            acc.min = acc.min.min(v);
            acc.max = acc.max.max(v);
        }
        if n < 5000 {
            break;
        }
    }
    let k = state.config.min_group_size;
    let mut suppressed = 0;
    let mut out = Vec::new();
    for (group, a) in groups {
        if a.subjects.len() < k {
            suppressed += 1;
            continue;
        }
        out.push(Group {
            group,
            subjects: a.subjects.len() as u64,
            records: a.n,
            mean: a.sum / a.n as f64,
            min: a.min,
            max: a.max,
        });
    }
    Ok(Json(Aggregates {
        groups: out,
        suppressed_groups: suppressed,
        min_group_size: k,
    }))
}
