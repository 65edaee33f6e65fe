//! The SDK's own ONNX inference (tract, behind `vitalcore::inference::OnnxModel`) for data
//! teams: load a model from bytes, read its input and output facts, and run it on rows of
//! feature values exactly as a device runs it (one row at a time, input pinned to
//! `[1, features]` or whatever shape the caller pins). The training pipeline's parity check
//! compares these outputs with ONNX Runtime's.

use std::sync::Arc;

use vitalcore::inference::{InferenceError, OnnxModel as CoreModel};

use crate::VitalcoreError;

type Result<T, E = VitalcoreError> = std::result::Result<T, E>;

/// Name, element type and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TensorInfo {
    /// ONNX tensor name.
    pub name: String,
    /// Element type as tract names it (`F32`, `I64`, ...) or, for declared facts, as ONNX
    /// names it (`FLOAT`, `INT64`, ...).
    pub datum_type: String,
    /// Dimensions; a dynamic one as its symbol (`N`, `batch`) or `?`.
    pub shape: Vec<String>,
}

impl From<&vitalcore::inference::TensorInfo> for TensorInfo {
    fn from(t: &vitalcore::inference::TensorInfo) -> Self {
        Self {
            name: t.name.clone(),
            datum_type: t.datum_type.clone(),
            shape: t.shape.clone(),
        }
    }
}

/// What an ONNX file declares, read without preparing it for inference.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OnnxInspection {
    /// Inputs as declared (dynamic dimensions as symbols).
    pub inputs: Vec<TensorInfo>,
    /// Outputs as declared.
    pub outputs: Vec<TensorInfo>,
    /// Operators the SDK's inference does not implement (empty: the model can load).
    pub unsupported_operators: Vec<String>,
    /// Compatibility rewrites the loader applies before parsing.
    pub rewrites: Vec<String>,
}

/// Load-time problems make the model unusable (`ModelRejected`); a wrong input length or
/// output name is the caller's (`InvalidInput`). Messages name shapes and tensors, never
/// values.
impl From<InferenceError> for VitalcoreError {
    fn from(e: InferenceError) -> Self {
        use InferenceError as I;
        let reason = e.to_string();
        match e {
            I::InputLength { .. } | I::UnknownOutput(_) | I::InputShape { .. } => {
                Self::InvalidInput { reason }
            }
            _ => Self::unusable_model(reason),
        }
    }
}

/// Reads an ONNX file's declared inputs and outputs and the operators the SDK lacks.
#[uniffi::export]
pub fn inspect_onnx(onnx: Vec<u8>) -> Result<OnnxInspection> {
    let i = vitalcore::inference::inspect(&onnx)?;
    Ok(OnnxInspection {
        inputs: i.inputs.iter().map(Into::into).collect(),
        outputs: i.outputs.iter().map(Into::into).collect(),
        unsupported_operators: i.unsupported_operators,
        rewrites: i.rewrites,
    })
}

/// An ONNX model prepared by the SDK's inference engine, as a device runs it.
#[derive(Debug, uniffi::Object)]
pub struct OnnxModel {
    inner: CoreModel,
}

impl OnnxModel {
    /// Values in one row: the product of the pinned shape without its leading batch
    /// dimension of 1 (what `run_rows` feeds per call).
    fn row_len(&self) -> Result<usize> {
        match self.inner.input_shape() {
            [1, rest @ ..] => Ok(rest.iter().product()),
            _ => Err(VitalcoreError::invalid(
                "rows need an input pinned with a leading batch dimension of 1",
            )),
        }
    }

    fn output(&self, name: &str) -> Result<usize> {
        self.inner.output_index(name).ok_or_else(|| {
            VitalcoreError::invalid("no output by this name (see `outputs`)".to_owned())
        })
    }

    /// Runs every row (`len` values each, from `row(i)`) and returns output `output` of each,
    /// all of one width.
    fn rows_with(
        &self,
        n: usize,
        output: &str,
        mut row: impl FnMut(usize, &mut Vec<f32>),
    ) -> Result<(usize, Vec<f32>)> {
        let index = self.output(output)?;
        let mut input = Vec::new();
        let mut one = Vec::new();
        let mut all = Vec::new();
        let mut width = None;
        for i in 0..n {
            input.clear();
            row(i, &mut input);
            self.inner.run_into(&input, index, &mut one)?;
            match width {
                None => width = Some(one.len()),
                Some(w) if w != one.len() => {
                    return Err(VitalcoreError::unusable_model(
                        "the output's length changes from row to row",
                    ))
                }
                Some(_) => {}
            }
            all.extend_from_slice(&one);
        }
        Ok((width.unwrap_or(0), all))
    }
}

#[uniffi::export]
impl OnnxModel {
    /// Loads `onnx` with its single input pinned to `input_shape` (f32; for rows of `n`
    /// feature values, `[1, n]`) and prepares it once. `outputs`, when given, keeps only those
    /// outputs (by ONNX name), pruning work nobody reads. `ModelRejected` when the SDK cannot
    /// run the model (unknown operators, more than one input, a shape it contradicts).
    #[uniffi::constructor]
    pub fn new(
        onnx: Vec<u8>,
        input_shape: Vec<u64>,
        outputs: Option<Vec<String>>,
    ) -> Result<Arc<Self>> {
        let shape = input_shape
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0 && d <= 1 << 24))
            .collect::<Option<Vec<usize>>>()
            .filter(|s| !s.is_empty() && s.len() <= 8)
            .ok_or_else(|| {
                VitalcoreError::invalid("input shape needs 1 to 8 dimensions of 1..=16777216")
            })?;
        if shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .is_none_or(|n| n > 1 << 24)
        {
            return Err(VitalcoreError::invalid(
                "input shape holds more than 16777216 values",
            ));
        }
        let names: Option<Vec<&str>> = outputs
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        Ok(Arc::new(Self {
            inner: CoreModel::load(&onnx, &shape, names.as_deref())?,
        }))
    }

    /// The pinned input.
    pub fn input(&self) -> TensorInfo {
        self.inner.input().into()
    }

    /// The outputs, in order.
    pub fn outputs(&self) -> Vec<TensorInfo> {
        self.inner.outputs().iter().map(Into::into).collect()
    }

    /// The pinned input shape.
    pub fn input_shape(&self) -> Vec<u64> {
        self.inner.input_shape().iter().map(|&d| d as u64).collect()
    }

    /// Compatibility rewrites the loader applied.
    pub fn rewrites(&self) -> Vec<String> {
        self.inner
            .rewrites()
            .iter()
            .map(|r| (*r).to_owned())
            .collect()
    }

    /// Runs one input (row-major values of the pinned shape); every float output, in order
    /// (a non-float output, such as a classifier's labels, as an empty list).
    pub fn run(&self, input: Vec<f32>) -> Result<Vec<Vec<f32>>> {
        Ok(self.inner.run_all(&input)?)
    }

    /// Runs each row (feature values, cast to f32 as the device does) through the model on
    /// its own and returns output `output` of each. The input must be pinned `[1, ...]`;
    /// every row has as many values as one input holds.
    pub fn run_rows(&self, rows: Vec<Vec<f64>>, output: String) -> Result<Vec<Vec<f32>>> {
        let len = self.row_len()?;
        if let Some(i) = rows.iter().position(|r| r.len() != len) {
            return Err(VitalcoreError::invalid(format!(
                "row {i} has {} values, the model takes {len}",
                rows[i].len()
            )));
        }
        let (width, all) = self.rows_with(rows.len(), &output, |i, buf| {
            buf.extend(rows[i].iter().map(|&v| v as f32));
        })?;
        Ok(if width == 0 {
            vec![Vec::new(); rows.len()]
        } else {
            all.chunks(width).map(<[f32]>::to_vec).collect()
        })
    }

    /// [`OnnxModel::run_rows`] on rows packed as little-endian f32 bytes, row after row (a
    /// C-contiguous float32 array's bytes), answering little-endian f32 bytes, row after row.
    /// One copy each way instead of one encode per value.
    pub fn run_rows_f32le(&self, rows: Vec<u8>, output: String) -> Result<Vec<u8>> {
        let len = self.row_len()?;
        let row_bytes = len * 4;
        if row_bytes == 0 || !rows.len().is_multiple_of(row_bytes) {
            return Err(VitalcoreError::invalid(format!(
                "{} bytes are not whole rows of {len} f32 values",
                rows.len()
            )));
        }
        let n = rows.len() / row_bytes;
        let (_, all) = self.rows_with(n, &output, |i, buf| {
            buf.extend(
                rows[i * row_bytes..(i + 1) * row_bytes]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        })?;
        Ok(all.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default model the SDK ships (in the repository), a real skl2onnx export.
    fn default_model() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/rhythm-ppg.onnx");
        std::fs::read(path).expect("models/rhythm-ppg.onnx is in the repository")
    }

    #[test]
    fn garbage_is_rejected_and_bad_shapes_are_invalid_input() {
        let err = OnnxModel::new(b"not onnx".to_vec(), vec![1, 4], None).expect_err("garbage");
        assert!(
            matches!(err, VitalcoreError::ModelRejected { .. }),
            "{err:?}"
        );
        for shape in [
            vec![],
            vec![0, 3],
            vec![1, u64::MAX],
            vec![1 << 20, 1 << 20],
        ] {
            let err = OnnxModel::new(default_model(), shape.clone(), None).expect_err("shape");
            assert!(
                matches!(err, VitalcoreError::InvalidInput { .. }),
                "{shape:?}: {err:?}"
            );
        }
        let err = inspect_onnx(vec![0xff; 64]).expect_err("garbage");
        assert!(
            matches!(err, VitalcoreError::ModelRejected { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn rows_give_what_single_runs_give_on_the_shipped_model() {
        let facts = inspect_onnx(default_model()).expect("inspect");
        assert!(facts.unsupported_operators.is_empty(), "{facts:?}");
        let features: u64 = facts.inputs[0].shape[1]
            .parse()
            .expect("fixed feature count");
        let out = facts
            .outputs
            .iter()
            .find(|o| o.name == "probabilities")
            .expect("probabilities");
        let m = OnnxModel::new(default_model(), vec![1, features], None).expect("load");
        let index = m
            .outputs()
            .iter()
            .position(|o| o.name == out.name)
            .expect("kept");
        let rows: Vec<Vec<f64>> = (0..5)
            .map(|r| {
                (0..features)
                    .map(|c| (r as f64 - 2.0) * 0.7 + c as f64 * 0.1)
                    .collect()
            })
            .collect();
        let by_rows = m.run_rows(rows.clone(), out.name.clone()).expect("rows");
        for (row, got) in rows.iter().zip(&by_rows) {
            let single = m.run(row.iter().map(|&v| v as f32).collect()).expect("run");
            assert_eq!(&single[index], got);
            assert!(
                (got.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                "probabilities: {got:?}"
            );
        }
        let packed: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        let bytes = m
            .run_rows_f32le(packed.clone(), out.name.clone())
            .expect("packed");
        let flat: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(flat, by_rows.concat());
        let err = m.run_rows_f32le(packed[..packed.len() - 1].to_vec(), out.name.clone());
        assert!(
            matches!(err, Err(VitalcoreError::InvalidInput { .. })),
            "{err:?}"
        );
        let err = m.run_rows(vec![vec![0.0; 2]], out.name.clone());
        assert!(
            matches!(err, Err(VitalcoreError::InvalidInput { .. })),
            "{err:?}"
        );
        let err = m.run_rows(rows, "nope".into());
        assert!(
            matches!(err, Err(VitalcoreError::InvalidInput { .. })),
            "{err:?}"
        );
    }
}
