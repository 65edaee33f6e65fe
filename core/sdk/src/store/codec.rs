//! Compact binary encoding of the plaintext inside sealed columns.
//!
//! Length-prefixed little-endian fields behind a one-byte layout tag. Decoding is total: any
//! byte string yields a value or a [`DecodeError`], never a panic or an unbounded allocation.

use std::collections::BTreeMap;

/// The bytes inside a sealed column did not decode (they authenticated, so this means a bug or
/// an unknown future layout, not tampering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored value has an unexpected layout")]
pub struct DecodeError;

pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn with_tag(tag: u8, capacity: usize) -> Self {
        let mut v = Vec::with_capacity(capacity + 1);
        v.push(tag);
        Self(v)
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.len(b.len());
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn f32s(&mut self, vs: &[f32]) -> &mut Self {
        self.len(vs.len());
        for v in vs {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    pub fn str_f64_map<'a>(
        &mut self,
        m: impl ExactSizeIterator<Item = (&'a String, &'a f64)>,
    ) -> &mut Self {
        self.len(m.len());
        for (k, v) in m {
            self.str(k).f64(*v);
        }
        self
    }
    pub fn str_str_map(&mut self, m: &BTreeMap<String, String>) -> &mut Self {
        self.len(m.len());
        for (k, v) in m {
            self.str(k).str(v);
        }
        self
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading after checking the layout tag.
    pub fn with_tag(buf: &'a [u8], tag: u8) -> Result<Self, DecodeError> {
        match buf.split_first() {
            Some((t, rest)) if *t == tag => Ok(Self { buf: rest }),
            _ => Err(DecodeError),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError),
        }
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.arr()?))
    }
    /// A count of items each at least `min_item` bytes long, checked against what remains so a
    /// forged count cannot trigger a huge allocation.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(DecodeError);
        }
        Ok(n)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count(1)?;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| DecodeError)
    }
    pub fn f32s(&mut self) -> Result<Vec<f32>, DecodeError> {
        let n = self.count(4)?;
        let raw = self.take(n * 4)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub fn str_f64_map(&mut self) -> Result<BTreeMap<String, f64>, DecodeError> {
        let n = self.count(12)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.f64()?;
            if m.insert(k, v).is_some() {
                return Err(DecodeError);
            }
        }
        Ok(m)
    }
    pub fn str_str_map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.count(8)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            if m.insert(k, v).is_some() {
                return Err(DecodeError);
            }
        }
        Ok(m)
    }
    /// Fails unless every byte was consumed: trailing garbage is a layout error.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError)
        }
    }
}
