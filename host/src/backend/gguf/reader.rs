//! Reads a GGUF file's header, metadata and tensor table (never the weights) and turns
//! them into [`ModelMetadata`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::format::{tag, GgufValue, DEFAULT_ALIGNMENT, MAGIC, SUPPORTED_VERSIONS};
use crate::backend::layout::{layout, Header, HeaderValue};
use crate::backend::{ModelMetadata, SizeClass};

/// Numeric arrays up to this length are kept (per-layer head counts); longer ones and all
/// string arrays (vocabularies) are skipped.
const MAX_KEPT_ARRAY: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF model file: it starts with {found:02x?}, expected \"GGUF\"")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: unsupported GGUF version {version} (Ozone reads versions 2 and 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error(
        "{path} is truncated: {what} at byte {offset} runs past the end of the file ({len} bytes)"
    )]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        len: u64,
    },
    #[error(
        "{path} has no general.architecture key: llama.cpp cannot load a model without one \
         (re-convert it with a current convert_hf_to_gguf.py)"
    )]
    NoArchitecture { path: PathBuf },
    #[error("{path} is corrupt: {detail} (at byte {offset})")]
    Corrupt {
        path: PathBuf,
        detail: String,
        offset: u64,
    },
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of the tensor's data, for the common types whose block layout is fixed
    /// (`None` for others: only their start is checked against the file size).
    pub fn byte_size(&self) -> Option<u64> {
        // (elements per block, bytes per block) from ggml's type traits.
        let (block, bytes) = match self.ggml_type {
            0 => (1, 4),      // F32
            1 => (1, 2),      // F16
            2 => (32, 18),    // Q4_0
            3 => (32, 20),    // Q4_1
            6 => (32, 22),    // Q5_0
            7 => (32, 24),    // Q5_1
            8 => (32, 34),    // Q8_0
            10 => (256, 84),  // Q2_K
            11 => (256, 110), // Q3_K
            12 => (256, 144), // Q4_K
            13 => (256, 176), // Q5_K
            14 => (256, 210), // Q6_K
            30 => (1, 2),     // BF16
            _ => return None,
        };
        Some(self.elements().div_ceil(block) * bytes)
    }
}

/// Everything in a GGUF file except the tensor data.
#[derive(Debug, Clone)]
pub struct GgufMetadata {
    pub path: PathBuf,
    pub version: u32,
    pub file_size: u64,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
}

impl GgufMetadata {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn u64_of(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// A per-layer count that may be a scalar or an array (one value per layer): the
    /// largest value, so memory estimates err on the safe side.
    fn layer_max(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            GgufValue::Array(items) => items.iter().filter_map(GgufValue::as_u64).max(),
            v => v.as_u64(),
        }
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(GgufValue::as_str)
    }

    /// `general.parameter_count`, else the sum of every tensor's element count.
    pub fn parameter_count(&self) -> u64 {
        self.u64_of("general.parameter_count")
            .unwrap_or_else(|| self.tensors.iter().map(TensorInfo::elements).sum())
    }

    /// The facts Ozone plans with.
    pub fn model_metadata(&self) -> ModelMetadata {
        let arch = self.architecture().map(str::to_owned);
        let key = |suffix: &str| format!("{}.{suffix}", arch.as_deref().unwrap_or("llama"));
        let to_u32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
        let params = self.parameter_count();
        let embedding = to_u32(self.u64_of(&key("embedding_length")));
        let heads = to_u32(self.layer_max(&key("attention.head_count")));
        let per_head = match (embedding, heads) {
            (Some(e), Some(h)) if h > 0 => Some(e / h),
            _ => None,
        };
        let keys = ArchKeys {
            metadata: self,
            arch: arch.as_deref().unwrap_or("llama"),
        };
        let (layers, experts) = layout(keys.arch, &keys);
        let name = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string());
        ModelMetadata {
            name,
            architecture: arch.clone(),
            parameter_count: Some(params),
            size_class: SizeClass::from_params(params),
            trained_context: to_u32(self.u64_of(&key("context_length"))),
            block_count: to_u32(self.u64_of(&key("block_count"))),
            head_count: heads,
            head_count_kv: to_u32(self.layer_max(&key("attention.head_count_kv"))).or(heads),
            embedding_length: embedding,
            key_length: to_u32(self.u64_of(&key("attention.key_length"))).or(per_head),
            value_length: to_u32(self.u64_of(&key("attention.value_length"))).or(per_head),
            layers,
            experts,
            weights_bytes: Some(self.file_size),
            digest: None,
        }
    }
}

/// The architecture's keys of a GGUF header.
struct ArchKeys<'a> {
    metadata: &'a GgufMetadata,
    arch: &'a str,
}

impl Header for ArchKeys<'_> {
    fn value(&self, suffix: &str) -> Option<HeaderValue> {
        match self.metadata.get(&format!("{}.{suffix}", self.arch))? {
            GgufValue::Array(items) if items.iter().all(|i| matches!(i, GgufValue::Bool(_))) => {
                Some(HeaderValue::Flags(
                    items
                        .iter()
                        .map(|i| matches!(i, GgufValue::Bool(true)))
                        .collect(),
                ))
            }
            GgufValue::Array(items) => Some(HeaderValue::Numbers(
                items.iter().filter_map(GgufValue::as_u64).collect(),
            )),
            v => v.as_u64().map(HeaderValue::Number),
        }
    }
}

/// `sha256:<hex>` of the whole file, for warm starts (reads every byte: seconds for a
/// large model).
pub fn file_digest(path: &Path) -> Result<String, GgufError> {
    use sha2::{Digest, Sha256};
    let io = |source| GgufError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

/// Reads the model facts of a GGUF file (without the digest: see [`file_digest`]).
pub fn read_model_metadata(path: &Path) -> Result<ModelMetadata, GgufError> {
    let metadata = read_metadata(path)?;
    if metadata.architecture().is_none() {
        return Err(GgufError::NoArchitecture {
            path: path.to_owned(),
        });
    }
    Ok(metadata.model_metadata())
}

/// Reads header, metadata and tensor table of a GGUF file.
pub fn read_metadata(path: &Path) -> Result<GgufMetadata, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let file_size = file.metadata().map_err(io)?.len();
    let mut r = Cursor {
        inner: BufReader::new(file),
        path,
        offset: 0,
        len: file_size,
    };

    let magic: [u8; 4] = r.bytes("the magic bytes")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            path: path.to_owned(),
            found: magic.to_vec(),
        });
    }
    let version = r.u32("the version")?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(GgufError::UnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.string("a metadata key")?;
        let value_type = r.u32("a metadata value type")?;
        let value = r.value(value_type, &key)?;
        metadata.insert(key, value);
    }

    // Counts come from the file: reserve little, a corrupt count ends as `Truncated`.
    let mut tensors = Vec::with_capacity(tensor_count.min(4096) as usize);
    for _ in 0..tensor_count {
        let name = r.string("a tensor name")?;
        let n_dims = r.u32("a tensor's dimension count")?;
        if n_dims > 8 {
            return Err(r.corrupt(format!("tensor {name} has {n_dims} dimensions")));
        }
        let dims = (0..n_dims)
            .map(|_| r.u64("a tensor dimension"))
            .collect::<Result<Vec<_>, _>>()?;
        let ggml_type = r.u32("a tensor type")?;
        let offset = r.u64("a tensor offset")?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    // The weights must at least begin inside the file.
    let alignment = metadata
        .get("general.alignment")
        .and_then(GgufValue::as_u64)
        .filter(|a| *a > 0)
        .unwrap_or(DEFAULT_ALIGNMENT);
    let data_start = r.offset.div_ceil(alignment) * alignment;
    let data_end = tensors
        .iter()
        .map(|t| t.offset + t.byte_size().unwrap_or(0))
        .max();
    if let Some(end) = data_end {
        if data_start + end > file_size {
            return Err(GgufError::Truncated {
                path: path.to_owned(),
                what: "the tensor data".into(),
                offset: data_start + end,
                len: file_size,
            });
        }
    }

    Ok(GgufMetadata {
        path: path.to_owned(),
        version,
        file_size,
        metadata,
        tensors,
    })
}

/// A position-tracking reader that turns every short read into a `Truncated` error.
struct Cursor<'a> {
    inner: BufReader<File>,
    path: &'a Path,
    offset: u64,
    len: u64,
}

impl Cursor<'_> {
    fn truncated(&self, what: &str) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_owned(),
            what: what.to_owned(),
            offset: self.offset,
            len: self.len,
        }
    }

    fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_owned(),
            detail,
            offset: self.offset,
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        if self.offset + buf.len() as u64 > self.len {
            return Err(self.truncated(what));
        }
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated(what)
            } else {
                GgufError::Io {
                    path: self.path.to_owned(),
                    source: e,
                }
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if self.offset + len > self.len {
            return Err(self.truncated(what));
        }
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|_| self.corrupt(format!("{what} is not UTF-8")))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        if self.offset + n > self.len {
            return Err(self.truncated(what));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(
            |source| GgufError::Io {
                path: self.path.to_owned(),
                source,
            },
        )?;
        if copied != n {
            return Err(self.truncated(what));
        }
        self.offset += n;
        Ok(())
    }

    fn value(&mut self, value_type: u32, key: &str) -> Result<GgufValue, GgufError> {
        let what = format!("the value of {key}");
        Ok(match value_type {
            tag::U8 => GgufValue::U8(u8::from_le_bytes(self.bytes(&what)?)),
            tag::I8 => GgufValue::I8(i8::from_le_bytes(self.bytes(&what)?)),
            tag::U16 => GgufValue::U16(u16::from_le_bytes(self.bytes(&what)?)),
            tag::I16 => GgufValue::I16(i16::from_le_bytes(self.bytes(&what)?)),
            tag::U32 => GgufValue::U32(self.u32(&what)?),
            tag::I32 => GgufValue::I32(i32::from_le_bytes(self.bytes(&what)?)),
            tag::F32 => GgufValue::F32(f32::from_le_bytes(self.bytes(&what)?)),
            tag::BOOL => GgufValue::Bool(self.bytes::<1>(&what)?[0] != 0),
            tag::STRING => GgufValue::String(self.string(&what)?),
            tag::U64 => GgufValue::U64(self.u64(&what)?),
            tag::I64 => GgufValue::I64(i64::from_le_bytes(self.bytes(&what)?)),
            tag::F64 => GgufValue::F64(f64::from_le_bytes(self.bytes(&what)?)),
            tag::ARRAY => return self.array(key, &what),
            other => return Err(self.corrupt(format!("{key} has unknown value type {other}"))),
        })
    }

    fn array(&mut self, key: &str, what: &str) -> Result<GgufValue, GgufError> {
        let elem_type = self.u32(what)?;
        let len = self.u64(what)?;
        let fixed_size = match elem_type {
            tag::U8 | tag::I8 | tag::BOOL => Some(1),
            tag::U16 | tag::I16 => Some(2),
            tag::U32 | tag::I32 | tag::F32 => Some(4),
            tag::U64 | tag::I64 | tag::F64 => Some(8),
            _ => None,
        };
        match fixed_size {
            Some(_) if len <= MAX_KEPT_ARRAY => {
                let items = (0..len)
                    .map(|_| self.value(elem_type, key))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(GgufValue::Array(items))
            }
            Some(size) => {
                let bytes = len.checked_mul(size).ok_or_else(|| self.truncated(what))?;
                self.skip(bytes, what)?;
                Ok(GgufValue::SkippedArray { elem_type, len })
            }
            None if elem_type == tag::STRING => {
                for _ in 0..len {
                    let n = self.u64(what)?;
                    self.skip(n, what)?;
                }
                Ok(GgufValue::SkippedArray { elem_type, len })
            }
            None => Err(self.corrupt(format!(
                "{key} is an array of unsupported element type {elem_type}"
            ))),
        }
    }
}
