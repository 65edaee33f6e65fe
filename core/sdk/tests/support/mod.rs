//! Shared by the inference/model tests and the inference benchmark: where the test models and
//! ONNX Runtime live, a reference runner on ONNX Runtime, and a deterministic input generator.
#![allow(dead_code)]

use std::path::PathBuf;

/// Directory of the models `make data` builds (`models/scripts/make_test_models.py`).
pub fn models_dir() -> PathBuf {
    let cache = std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"));
    let dir = cache.join("models");
    assert!(
        dir.join("index.json").is_file(),
        "test models missing in {}: run `make data` (builds them with models/scripts/make_test_models.py)",
        dir.display()
    );
    dir
}

/// Bytes of test model `name` (file stem in the models directory).
pub fn model_bytes(name: &str) -> Vec<u8> {
    let path = models_dir().join(format!("{name}.onnx"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Root of the workspace.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Initializes ONNX Runtime from `ORT_DYLIB_PATH` once, or panics saying how to get it.
pub fn init_ort() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let path = std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| {
            panic!(
                "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so from the onnxruntime wheel \
                 (`make test` exports it after `make data` builds .venv)"
            )
        });
        assert!(
            std::path::Path::new(&path).is_file(),
            "ORT_DYLIB_PATH={path} does not exist: run `make data` to build .venv with onnxruntime"
        );
        ort::init_from(path)
            .commit()
            .expect("ONNX Runtime library loads");
    });
}

/// A single-threaded ONNX Runtime session, the reference tract is compared with.
pub struct OrtRef {
    session: ort::session::Session,
    input: String,
}

impl OrtRef {
    pub fn new(bytes: &[u8]) -> Self {
        init_ort();
        let session = ort::session::Session::builder()
            .and_then(|b| b.with_intra_threads(1))
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.commit_from_memory(bytes))
            .expect("ONNX Runtime loads the model");
        let input = session.inputs[0].name.clone();
        OrtRef { session, input }
    }

    /// Runs `input` with `shape` and returns float output `output` (by name).
    pub fn run(&mut self, shape: &[usize], input: &[f32], output: &str) -> Vec<f32> {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let tensor = ort::value::TensorRef::from_array_view((shape, input)).expect("input tensor");
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .expect("ONNX Runtime runs the model");
        let (_, values) = outputs[output]
            .try_extract_tensor::<f32>()
            .expect("float output");
        values.to_vec()
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Approximately standard normal (sum of uniforms), scaled.
    pub fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..6).map(|_| self.unit()).sum();
        // Six uniforms on [-1, 1) have variance 2.
        s * std::f32::consts::FRAC_1_SQRT_2 * scale
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(scale)).collect()
    }
}
