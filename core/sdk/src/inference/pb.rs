//! The subset of `onnx.proto` the SDK reads itself: enough to decide which evaluator serves a
//! graph, build the native evaluators and report a file's declared inputs and outputs, in
//! builds with and without tract.
//!
//! Written by hand with prost's derives and the official field numbers of `onnx.proto` (IR
//! version 10); type and field names follow prost-build's output for that file, so code reads
//! the same as over tract's generated types. Fields not declared here (sparse initializers,
//! training info, functions, quantization annotations, segments) are skipped by prost while
//! decoding, which is fine for reading and would lose data on re-encoding: these messages are
//! never encoded back into a model for another runtime.

/// A whole model file: its opsets and its main graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A key/value pair (model metadata, external data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One imported operator set: the domain (empty for the default `ai.onnx`) and its version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// A computation graph: nodes in topological order, constant initializers, declared I/O.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// A named attribute of a node; which field holds the value is given by `type`
/// ([`attribute_proto::AttributeType`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    #[prost(string, tag = "13")]
    pub doc_string: String,
    #[prost(enumeration = "attribute_proto::AttributeType", tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

/// Nested types of [`AttributeProto`].
pub mod attribute_proto {
    /// Which field of an [`AttributeProto`](super::AttributeProto) holds its value.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        Undefined = 0,
        Float = 1,
        Int = 2,
        String = 3,
        Tensor = 4,
        Graph = 5,
        SparseTensor = 11,
        TypeProto = 13,
        Floats = 6,
        Ints = 7,
        Strings = 8,
        Tensors = 9,
        Graphs = 10,
        SparseTensors = 12,
        TypeProtos = 14,
    }
}

/// A graph input, output or intermediate value: its name and type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// The type of a value: a tensor, or a sequence or map of values (ZipMap outputs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(string, tag = "6")]
    pub denotation: String,
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 9")]
    pub value: Option<type_proto::Value>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// A tensor type: element type ([`DataType`](super::tensor_proto::DataType)) and shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// A sequence of values of one type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// A map from a scalar key type to values of one type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        #[prost(int32, tag = "1")]
        pub key_type: i32,
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<super::TypeProto>>,
    }

    /// An optional value of one type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// Which kind of type a [`TypeProto`](super::TypeProto) describes.
    // Variant names are onnx.proto's field names, as in every other reader of the format.
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        #[prost(message, tag = "4")]
        SequenceType(Box<Sequence>),
        #[prost(message, tag = "5")]
        MapType(Box<Map>),
        #[prost(message, tag = "9")]
        OptionalType(Box<Optional>),
    }
}

/// A tensor's shape: one entry per dimension, each a size or a symbol.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(string, tag = "3")]
        pub denotation: String,
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// A fixed size, or a symbol (a dynamic batch dimension).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// A constant tensor (initializers, tensor attributes). Values sit in the typed field that
/// matches `data_type`, or little-endian in `raw_data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(string, tag = "12")]
    pub doc_string: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(enumeration = "tensor_proto::DataLocation", tag = "14")]
    pub data_location: i32,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
}

/// Nested types of [`TensorProto`].
pub mod tensor_proto {
    /// Element types.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        Undefined = 0,
        Float = 1,
        Uint8 = 2,
        Int8 = 3,
        Uint16 = 4,
        Int16 = 5,
        Int32 = 6,
        Int64 = 7,
        String = 8,
        Bool = 9,
        Float16 = 10,
        Double = 11,
        Uint32 = 12,
        Uint64 = 13,
        Complex64 = 14,
        Complex128 = 15,
        Bfloat16 = 16,
        Float8e4m3fn = 17,
        Float8e4m3fnuz = 18,
        Float8e5m2 = 19,
        Float8e5m2fnuz = 20,
        Uint4 = 21,
        Int4 = 22,
    }

    impl DataType {
        /// The name `onnx.proto` gives the value (`"FLOAT"`, `"INT64"`, ...).
        pub fn as_str_name(&self) -> &'static str {
            match self {
                DataType::Undefined => "UNDEFINED",
                DataType::Float => "FLOAT",
                DataType::Uint8 => "UINT8",
                DataType::Int8 => "INT8",
                DataType::Uint16 => "UINT16",
                DataType::Int16 => "INT16",
                DataType::Int32 => "INT32",
                DataType::Int64 => "INT64",
                DataType::String => "STRING",
                DataType::Bool => "BOOL",
                DataType::Float16 => "FLOAT16",
                DataType::Double => "DOUBLE",
                DataType::Uint32 => "UINT32",
                DataType::Uint64 => "UINT64",
                DataType::Complex64 => "COMPLEX64",
                DataType::Complex128 => "COMPLEX128",
                DataType::Bfloat16 => "BFLOAT16",
                DataType::Float8e4m3fn => "FLOAT8E4M3FN",
                DataType::Float8e4m3fnuz => "FLOAT8E4M3FNUZ",
                DataType::Float8e5m2 => "FLOAT8E5M2",
                DataType::Float8e5m2fnuz => "FLOAT8E5M2FNUZ",
                DataType::Uint4 => "UINT4",
                DataType::Int4 => "INT4",
            }
        }
    }

    /// Where a tensor's values are stored.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        Default = 0,
        External = 1,
    }
}

/// Decodes an ONNX file.
pub(crate) fn decode(bytes: &[u8]) -> Result<ModelProto, super::InferenceError> {
    <ModelProto as prost::Message>::decode(bytes).map_err(|_| super::InferenceError::Decode)
}

#[cfg(all(test, feature = "tract"))]
mod tests {
    use std::path::PathBuf;

    /// One canonical text of everything these messages declare, written once for our types and
    /// once for tract's (generated by prost-build from the official `onnx.proto`): same field
    /// names, other paths.
    macro_rules! summary {
        ($pb:ident, $m:expr) => {{
            use std::fmt::Write as _;
            let m = $m;
            let mut s = String::new();
            let tensor = |s: &mut String, t: &$pb::TensorProto| {
                let _ = write!(
                    s,
                    "T({} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?})",
                    t.name,
                    t.dims,
                    t.data_type,
                    t.float_data,
                    t.int32_data,
                    t.int64_data,
                    t.string_data,
                    t.double_data,
                    t.uint64_data,
                    t.raw_data.len(),
                    t.external_data.len()
                );
            };
            let value_info = |s: &mut String, v: &$pb::ValueInfoProto| {
                use $pb::tensor_shape_proto::dimension::Value as Dim;
                use $pb::type_proto::Value as Ty;
                let _ = write!(s, "V({} ", v.name);
                match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                    Some(Ty::TensorType(t)) => {
                        let _ = write!(s, "tensor {} ", t.elem_type);
                        for d in t.shape.iter().flat_map(|sh| &sh.dim) {
                            match &d.value {
                                Some(Dim::DimValue(n)) => {
                                    let _ = write!(s, "{n},");
                                }
                                Some(Dim::DimParam(p)) => {
                                    let _ = write!(s, "{p},");
                                }
                                None => s.push_str("?,"),
                            }
                        }
                    }
                    // tract's TypeProto declares tensors only: its sequence and map types
                    // (ZipMap) decode as no type at all.
                    #[allow(unreachable_patterns)]
                    Some(_) | None => s.push_str("not a tensor"),
                }
                s.push(')');
            };
            let _ = write!(
                s,
                "M({} {} {} {} {})",
                m.ir_version, m.producer_name, m.producer_version, m.domain, m.model_version
            );
            for o in &m.opset_import {
                let _ = write!(s, "O({} {})", o.domain, o.version);
            }
            for p in &m.metadata_props {
                let _ = write!(s, "P({} {})", p.key, p.value);
            }
            if let Some(g) = &m.graph {
                let _ = write!(s, "G({})", g.name);
                for n in &g.node {
                    let _ = write!(
                        s,
                        "N({:?} {:?} {} {} {}",
                        n.input, n.output, n.name, n.op_type, n.domain
                    );
                    for a in &n.attribute {
                        let _ = write!(
                            s,
                            " A({} {} {} {} {:?} {:?} {:?} {:?} {} {} {}",
                            a.name,
                            a.r#type,
                            a.f,
                            a.i,
                            a.s,
                            a.floats,
                            a.ints,
                            a.strings,
                            a.g.is_some(),
                            a.graphs.len(),
                            a.tensors.len()
                        );
                        if let Some(t) = &a.t {
                            tensor(&mut s, t);
                        }
                        s.push(')');
                    }
                    s.push(')');
                }
                for t in &g.initializer {
                    tensor(&mut s, t);
                }
                for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
                    value_info(&mut s, v);
                }
            }
            s
        }};
    }

    fn model_files() -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cache = std::env::var_os("VITALCORE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".cache"));
        let mut files = vec![root.join("models/rhythm-ppg.onnx")];
        let dir = cache.join("models");
        let listing = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "test models missing in {} ({e}): run `make data`",
                dir.display()
            )
        });
        files.extend(
            listing
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx")),
        );
        assert!(files.len() > 5, "test models missing in {}", dir.display());
        files
    }

    /// Our hand-written field numbers read every test model exactly as tract's generated types do.
    #[test]
    fn decodes_real_models_as_the_generated_types_do() {
        for path in model_files() {
            let bytes = std::fs::read(&path).expect("model file readable");
            let ours = super::decode(&bytes).expect("our types decode");
            let theirs = tract_onnx::onnx()
                .proto_model_for_read(&mut &bytes[..])
                .expect("tract decodes");
            let (a, b) = (summary!(super, &ours), summary!(tract_pb, &theirs));
            assert!(a.len() > 100, "{}: summary too short", path.display());
            assert_eq!(a, b, "{}", path.display());
        }
    }

    use tract_onnx::pb as tract_pb;
    use tract_onnx::prelude::Framework as _;
}
