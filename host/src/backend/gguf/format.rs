//! The GGUF container's constants and metadata value types (spec: ggml/docs/gguf.md).

/// `GGUF` read as a little-endian u32.
pub(super) const MAGIC: [u8; 4] = *b"GGUF";
/// Version 3 is what current llama.cpp writes; 2 differs only in nothing we read.
pub(super) const SUPPORTED_VERSIONS: [u32; 2] = [2, 3];
/// Default tensor data alignment (`general.alignment` overrides it).
pub(super) const DEFAULT_ALIGNMENT: u64 = 32;

/// Metadata value type tags.
pub(super) mod tag {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// A metadata value. Long arrays (vocabularies) are kept as their length only.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<GgufValue>),
    /// An array whose elements were skipped (too long or of strings): type tag and length.
    SkippedArray {
        elem_type: u32,
        len: u64,
    },
}

impl GgufValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Tensor element types, with their block geometry (elements per block, bytes per block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
}

impl GgmlType {
    pub(super) fn tag(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
        }
    }
}
