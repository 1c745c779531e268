//! A minimal GGUF v3 writer: metadata plus F32/F16 tensors. Enough to generate test
//! models that llama.cpp loads; not a general converter.

use std::io::{self, Write};

use super::format::{tag, GgmlType, GgufValue, DEFAULT_ALIGNMENT, MAGIC};

/// Collects metadata and tensors, then writes the whole file at once.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn meta(&mut self, key: impl Into<String>, value: GgufValue) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor. `dims` are in GGUF order (fastest-varying first); `values` holds
    /// their product of elements, stored as `ggml_type`.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        values: &[f32],
    ) {
        let data = match ggml_type {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values
                .iter()
                .flat_map(|v| f32_to_f16_bits(*v).to_le_bytes())
                .collect(),
        };
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut w = Counting {
            inner: out,
            written: 0,
        };
        w.put(&MAGIC)?;
        w.put(&3u32.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            w.string(key)?;
            w.put(&value_tag(value).to_le_bytes())?;
            w.value(value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            w.string(&t.name)?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ggml_type.tag().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            offset = align(offset + t.data.len() as u64);
        }
        w.pad_to(align(w.written))?;
        let data_start = w.written;
        for t in &self.tensors {
            w.put(&t.data)?;
            w.pad_to(data_start + align(w.written - data_start))?;
        }
        Ok(())
    }
}

fn align(n: u64) -> u64 {
    n.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
}

fn value_tag(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => tag::U8,
        GgufValue::I8(_) => tag::I8,
        GgufValue::U16(_) => tag::U16,
        GgufValue::I16(_) => tag::I16,
        GgufValue::U32(_) => tag::U32,
        GgufValue::I32(_) => tag::I32,
        GgufValue::F32(_) => tag::F32,
        GgufValue::Bool(_) => tag::BOOL,
        GgufValue::String(_) => tag::STRING,
        GgufValue::U64(_) => tag::U64,
        GgufValue::I64(_) => tag::I64,
        GgufValue::F64(_) => tag::F64,
        GgufValue::Array(_) | GgufValue::SkippedArray { .. } => tag::ARRAY,
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Counting<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, target: u64) -> io::Result<()> {
        let n = target.saturating_sub(self.written) as usize;
        self.put(&vec![0u8; n])
    }

    fn string(&mut self, s: &str) -> io::Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn value(&mut self, v: &GgufValue) -> io::Result<()> {
        match v {
            GgufValue::U8(x) => self.put(&x.to_le_bytes()),
            GgufValue::I8(x) => self.put(&x.to_le_bytes()),
            GgufValue::U16(x) => self.put(&x.to_le_bytes()),
            GgufValue::I16(x) => self.put(&x.to_le_bytes()),
            GgufValue::U32(x) => self.put(&x.to_le_bytes()),
            GgufValue::I32(x) => self.put(&x.to_le_bytes()),
            GgufValue::F32(x) => self.put(&x.to_le_bytes()),
            GgufValue::Bool(x) => self.put(&[u8::from(*x)]),
            GgufValue::String(s) => self.string(s),
            GgufValue::U64(x) => self.put(&x.to_le_bytes()),
            GgufValue::I64(x) => self.put(&x.to_le_bytes()),
            GgufValue::F64(x) => self.put(&x.to_le_bytes()),
            GgufValue::Array(items) => {
                let elem = items.first().map_or(tag::U8, value_tag);
                if items.iter().any(|i| value_tag(i) != elem) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "GGUF arrays must hold a single element type",
                    ));
                }
                self.put(&elem.to_le_bytes())?;
                self.put(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|i| self.value(i))
            }
            GgufValue::SkippedArray { .. } => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a skipped array has no elements to write",
            )),
        }
    }
}

/// IEEE 754 half from single precision, round-to-nearest-even, for test weights.
fn f32_to_f16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mant | 0x0080_0000) >> (1 - e);
        let half = (m >> 13) + u32::from((m >> 12) & 1 == 1 && (m & 0x2fff) != 0);
        return sign | half as u16;
    }
    let half = ((e as u32) << 10) | (mant >> 13);
    let round = (mant >> 12) & 1 == 1 && (mant & 0x2fff) != 0;
    sign | (half + u32::from(round)) as u16
}

#[cfg(test)]
mod tests {
    use super::f32_to_f16_bits;

    #[test]
    fn half_conversion_matches_known_values() {
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.0), 0);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(1e9), 0x7c00);
        assert_eq!(f32_to_f16_bits(0.333_333_34), 0x3555);
    }
}
