//! Reader of CTranslate2's `model.bin` (binary version 6): a spec name, then named variables
//! (rank, shape, dtype, raw little-endian data) and aliases. Every length is checked against
//! the file, so a truncated or hostile file is an error, never a panic or a huge allocation.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ct2Error {
    #[error("model file ends early (at byte {0})")]
    Truncated(usize),
    #[error("model binary version {0} is not supported (6 is)")]
    Version(u32),
    #[error("model variable {0:?} has unknown dtype {1}")]
    Dtype(String, u8),
    #[error("model variable {0:?}: {1} bytes do not hold shape {2:?}")]
    Size(String, usize, Vec<usize>),
    #[error("model text is not UTF-8")]
    Text,
}

/// Element types of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One variable, borrowing its data from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable<'a> {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: &'a [u8],
}

impl Variable<'_> {
    /// The values as f32 (float dtypes only).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let pairs = self.data.chunks_exact(2);
        match self.dtype {
            Dtype::F32 => Some(
                self.data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F16 => Some(
                pairs
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            Dtype::Bf16 => Some(
                pairs
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A scalar integer (rank 0), as CTranslate2 stores flags such as `num_heads`.
    pub fn scalar(&self) -> Option<i64> {
        if !self.shape.is_empty() {
            return None;
        }
        Some(match (self.dtype, self.data) {
            (Dtype::I8, [a]) => i64::from(*a as i8),
            (Dtype::I16, [a, b]) => i64::from(i16::from_le_bytes([*a, *b])),
            (Dtype::I32, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            _ => return None,
        })
    }
}

/// A parsed model: its spec name and variables by name (aliases resolved).
#[derive(Debug)]
pub struct Model<'a> {
    pub spec: String,
    pub variables: HashMap<String, Variable<'a>>,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or(Ct2Error::Truncated(self.at))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A length-prefixed, NUL-terminated string.
    fn string(&mut self) -> Result<String, Ct2Error> {
        let n = usize::from(self.u16()?);
        let raw = self.take(n)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| Ct2Error::Text)
    }
}

/// Parses a whole `model.bin`.
pub fn parse(data: &[u8]) -> Result<Model<'_>, Ct2Error> {
    let mut c = Cursor { data, at: 0 };
    let version = c.u32()?;
    if version != 6 {
        return Err(Ct2Error::Version(version));
    }
    let spec = c.string()?;
    let _revision = c.u32()?;
    let count = c.u32()?;
    let mut variables = HashMap::new();
    for _ in 0..count {
        let name = c.string()?;
        let rank = usize::from(c.u8()?);
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u32()? as usize);
        }
        let id = c.u8()?;
        let dtype = Dtype::from_id(id).ok_or_else(|| Ct2Error::Dtype(name.clone(), id))?;
        let bytes = c.u32()? as usize;
        let elements = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
        if elements.and_then(|e| e.checked_mul(dtype.size())) != Some(bytes) {
            return Err(Ct2Error::Size(name, bytes, shape));
        }
        let data = c.take(bytes)?;
        variables.insert(name, Variable { shape, dtype, data });
    }
    // Aliases share another variable's data (the decoder projection is the embedding).
    if c.at < data.len() {
        for _ in 0..c.u32()? {
            let alias = c.string()?;
            let target = c.string()?;
            if let Some(v) = variables.get(&target).cloned() {
                variables.insert(alias, v);
            }
        }
    }
    Ok(Model { spec, variables })
}

/// Writes a `model.bin` (for tests and tools that build small models).
pub fn write(spec: &str, variables: &[(&str, Vec<usize>, Dtype, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    };
    out.extend(6u32.to_le_bytes());
    string(&mut out, spec);
    out.extend(1u32.to_le_bytes());
    out.extend((variables.len() as u32).to_le_bytes());
    for (name, shape, dtype, data) in variables {
        string(&mut out, name);
        out.push(shape.len() as u8);
        for d in shape {
            out.extend((*d as u32).to_le_bytes());
        }
        out.push(match dtype {
            Dtype::F32 => 0,
            Dtype::I8 => 1,
            Dtype::I16 => 2,
            Dtype::I32 => 3,
            Dtype::F16 => 4,
            Dtype::Bf16 => 5,
        });
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
    }
    out.extend(0u32.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_scalars() {
        let halves: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let file = write(
            "WhisperSpec",
            &[
                (
                    "encoder/num_heads",
                    vec![],
                    Dtype::I16,
                    6i16.to_le_bytes().to_vec(),
                ),
                ("encoder/w", vec![2], Dtype::F16, halves),
            ],
        );
        let model = parse(&file).unwrap();
        assert_eq!(model.spec, "WhisperSpec");
        assert_eq!(model.variables["encoder/num_heads"].scalar(), Some(6));
        assert_eq!(model.variables["encoder/w"].to_f32(), Some(vec![1.5, -2.0]));
    }

    #[test]
    fn malformed_files_are_errors() {
        let file = write("WhisperSpec", &[("w", vec![4], Dtype::F32, vec![0; 16])]);
        for len in 0..file.len() - 4 {
            assert!(parse(&file[..len]).is_err(), "truncated at {len}");
        }
        let mut wrong = file.clone();
        wrong[0] = 5;
        assert_eq!(parse(&wrong).unwrap_err(), Ct2Error::Version(5));
        let lying = write(
            "WhisperSpec",
            &[("w", vec![1000, 1000], Dtype::F32, vec![0; 16])],
        );
        assert!(matches!(parse(&lying), Err(Ct2Error::Size(..))));
        let huge = write(
            "WhisperSpec",
            &[("w", vec![usize::MAX >> 33, 1 << 31], Dtype::F32, vec![])],
        );
        assert!(parse(&huge).is_err());
    }
}
