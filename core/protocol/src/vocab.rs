//! The small vocabularies of an uploaded record, shared by the SDK (which never sends anything
//! else) and the server (which refuses anything else): check kinds, age bands, study and label
//! names, and the shape of a subject's possession proof.

/// Kinds of check a record may name.
pub const KINDS: &[&str] = &["ppg", "ecg", "accel"];

/// Whether `kind` is one of [`KINDS`].
pub fn is_valid_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Whether `band` is a generalized age band: five years as the SDK makes them (`"0-4"` ...
/// `"85-89"`), ten years (`"40-49"`, for data generalized more coarsely), or `"90+"`.
pub fn is_valid_age_band(band: &str) -> bool {
    if band == "90+" {
        return true;
    }
    let Some((lo, hi)) = band.split_once('-') else {
        return false;
    };
    let canonical =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !canonical(lo) || !canonical(hi) || (lo.len() > 1 && lo.starts_with('0')) {
        return false;
    }
    match (lo.parse::<u32>(), hi.parse::<u32>()) {
        (Ok(l), Ok(h)) => l < 90 && ((l % 5 == 0 && h == l + 4) || (l % 10 == 0 && h == l + 9)),
        _ => false,
    }
}

fn is_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `study` is a study name: 1 to 64 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn is_valid_study(study: &str) -> bool {
    is_name(study, 64)
}

/// Whether `label` is an outcome class name: 1 to 32 of `[a-z0-9_-]`, starting with a letter
/// or digit (class names such as `irregular`, never free text).
pub fn is_valid_label(label: &str) -> bool {
    is_name(label, 32)
}

/// Context of the subject possession proof (see [`crate::SyncBatch::subject_proofs`]).
///
/// The SDK computes the proof of pseudonym `p` as HMAC-SHA256 under the subject's pseudonym
/// key (which never leaves the device) over this context and `p`, each preceded by its length
/// as a big-endian `u64`, and sends it as lower-case hex. The server keeps only SHA-256 of the
/// proof, so what it stores cannot be replayed as a proof.
pub const SUBJECT_PROOF_CONTEXT: &[u8] = b"vitalcore-subject-proof/v1";

/// Length of a proof in hexadecimal digits (32 bytes).
pub const SUBJECT_PROOF_HEX_LEN: usize = 64;

/// Whether `proof` has the shape of a subject proof: 64 lower-case hex digits.
pub fn is_valid_subject_proof(proof: &str) -> bool {
    proof.len() == SUBJECT_PROOF_HEX_LEN
        && proof
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_are_five_or_ten_years_or_90_plus() {
        for ok in ["0-4", "5-9", "40-44", "85-89", "40-49", "80-89", "90+"] {
            assert!(is_valid_age_band(ok), "{ok}");
        }
        for bad in [
            "", "45-54", "41-45", "04-8", "90-94", "95+", "-4", "40-", "forty", "4-8 ",
        ] {
            assert!(!is_valid_age_band(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_small_lower_case_tokens() {
        for ok in ["default", "rhythm", "python_sync", "bench", "research-2"] {
            assert!(is_valid_study(ok), "{ok}");
        }
        for bad in ["", "Rhythm", "John Smith", "_x", "a/b", &"a".repeat(65)] {
            assert!(!is_valid_study(bad), "{bad}");
        }
        assert!(is_valid_label("irregular") && !is_valid_label("felt dizzy"));
        assert!(!is_valid_label(&"a".repeat(33)));
        assert!(is_valid_kind("ppg") && !is_valid_kind("ssn"));
    }

    #[test]
    fn proofs_are_lower_hex_of_32_bytes() {
        assert!(is_valid_subject_proof(&"0a".repeat(32)));
        assert!(!is_valid_subject_proof(&"0A".repeat(32)));
        assert!(!is_valid_subject_proof(&"0a".repeat(31)));
    }
}
