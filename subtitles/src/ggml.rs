//! The legacy ggml model file whisper.cpp loads: magic, eleven hyper-parameters, the mel
//! filterbank, the vocabulary, then tensors (dims, name, type, data) with dimensions written
//! innermost first. A small reader lists what a file holds, so conversions can be checked.

use std::io::{self, Write};

/// `ggml` in ASCII, as a little-endian u32.
pub const MAGIC: u32 = 0x6767_6d6c;

/// Tensor element types of the file (ggml's type numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ftype {
    F32 = 0,
    F16 = 1,
    /// Blocks of 32 values: an f16 scale, then 32 signed bytes.
    Q8_0 = 8,
}

/// Values in one Q8_0 block, and its bytes.
pub const Q8_0_BLOCK: usize = 32;
const Q8_0_BYTES: usize = 2 + Q8_0_BLOCK;

/// The file header's model type for Q8_0 weights: ggml's "mostly Q8_0" (7) plus its
/// quantisation format version (2) times 1000, as whisper.cpp reads it.
pub const MODEL_Q8_0: i32 = 2 * 1000 + 7;

/// `values` (a whole number of 32-value blocks) in ggml's Q8_0 layout: per block the largest
/// magnitude over 127 as an f16 scale, and each value over the scale rounded to a signed byte.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    debug_assert_eq!(values.len() % Q8_0_BLOCK, 0);
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * Q8_0_BYTES);
    for block in values.chunks(Q8_0_BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        out.extend(half::f16::from_f32(scale).to_le_bytes());
        out.extend(
            block
                .iter()
                .map(|v| ((v * inverse).round().clamp(-127.0, 127.0) as i8).to_le_bytes()[0]),
        );
    }
    out
}

/// Bytes of `elements` values of ggml type `ftype`, for the types this module writes.
fn tensor_bytes(ftype: i32, elements: usize) -> Option<usize> {
    match ftype {
        0 => elements.checked_mul(4),
        1 => elements.checked_mul(2),
        8 if elements % Q8_0_BLOCK == 0 => Some(elements / Q8_0_BLOCK * Q8_0_BYTES),
        _ => None,
    }
}

/// Whisper's hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// The model's weight type: 1 for f16, [`MODEL_Q8_0`] for Q8_0.
    pub ftype: i32,
}

impl Hparams {
    fn fields(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

fn i32s(w: &mut impl Write, values: &[i32]) -> io::Result<()> {
    values
        .iter()
        .try_for_each(|v| w.write_all(&v.to_le_bytes()))
}

/// Writes the header: magic, hyper-parameters, `filters` (`n_mels` rows of `n_fft` f32) and
/// the vocabulary (each token's bytes).
pub fn write_header(
    w: &mut impl Write,
    hparams: &Hparams,
    n_fft: usize,
    filters: &[f32],
    tokens: &[Vec<u8>],
) -> io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    i32s(w, &hparams.fields())?;
    i32s(w, &[hparams.n_mels, n_fft as i32])?;
    filters
        .iter()
        .try_for_each(|f| w.write_all(&f.to_le_bytes()))?;
    i32s(w, &[tokens.len() as i32])?;
    for t in tokens {
        i32s(w, &[t.len() as i32])?;
        w.write_all(t)?;
    }
    Ok(())
}

/// Writes one tensor; `shape` is in PyTorch order (outermost first), `data` already in `ftype`.
pub fn write_tensor(
    w: &mut impl Write,
    name: &str,
    shape: &[usize],
    ftype: Ftype,
    data: &[u8],
) -> io::Result<()> {
    i32s(w, &[shape.len() as i32, name.len() as i32, ftype as i32])?;
    let dims: Vec<i32> = shape.iter().rev().map(|d| *d as i32).collect();
    i32s(w, &dims)?;
    w.write_all(name.as_bytes())?;
    w.write_all(data)
}

/// What a tensor entry of a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first, as stored.
    pub dims: Vec<usize>,
    pub ftype: i32,
}

/// Reads little-endian i32s and skips bytes, refusing to run past the end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn i32(&mut self) -> Option<i32> {
        let b = self.data.get(self.at..self.at.checked_add(4)?)?;
        self.at += 4;
        Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i32()?).ok()
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.at = self.at.checked_add(n).filter(|e| *e <= self.data.len())?;
        Some(())
    }
}

/// A file's hyper-parameters, vocabulary size and tensors; `None` when it is not a valid
/// ggml Whisper file.
pub fn inspect(data: &[u8]) -> Option<(Hparams, usize, Vec<TensorInfo>)> {
    let mut r = Reader { data, at: 0 };
    if r.i32()? as u32 != MAGIC {
        return None;
    }
    let mut f = [0i32; 11];
    for v in &mut f {
        *v = r.i32()?;
    }
    let hparams = Hparams {
        n_vocab: f[0],
        n_audio_ctx: f[1],
        n_audio_state: f[2],
        n_audio_head: f[3],
        n_audio_layer: f[4],
        n_text_ctx: f[5],
        n_text_state: f[6],
        n_text_head: f[7],
        n_text_layer: f[8],
        n_mels: f[9],
        ftype: f[10],
    };
    let (rows, cols) = (r.count()?, r.count()?);
    r.skip(rows.checked_mul(cols)?.checked_mul(4)?)?;
    let words = r.count()?;
    for _ in 0..words {
        let n = r.count()?;
        r.skip(n)?;
    }
    let mut tensors = Vec::new();
    while r.at < data.len() {
        let n_dims = r.count()?;
        let name_len = r.count()?;
        let ftype = r.i32()?;
        if n_dims > 4 {
            return None;
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(r.count()?);
        }
        let start = r.at;
        r.skip(name_len)?;
        let name = String::from_utf8(data[start..r.at].to_vec()).ok()?;
        let elements = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?;
        r.skip(tensor_bytes(ftype, elements)?)?;
        tensors.push(TensorInfo { name, dims, ftype });
    }
    Some((hparams, words, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_tensors_read_back() {
        let mut file = Vec::new();
        let hp = Hparams {
            n_vocab: 3,
            n_mels: 2,
            ftype: 1,
            ..Hparams::default()
        };
        write_header(
            &mut file,
            &hp,
            3,
            &[0.0; 6],
            &[b"a".to_vec(), b"bc".to_vec()],
        )
        .unwrap();
        write_tensor(
            &mut file,
            "encoder.conv1.bias",
            &[4, 1],
            Ftype::F32,
            &[0; 16],
        )
        .unwrap();
        write_tensor(
            &mut file,
            "decoder.ln.weight",
            &[2, 3],
            Ftype::F16,
            &[0; 12],
        )
        .unwrap();
        let (read, words, tensors) = inspect(&file).unwrap();
        assert_eq!(read, hp);
        assert_eq!(words, 2);
        assert_eq!(tensors[0].dims, vec![1, 4], "innermost first");
        assert_eq!(
            tensors[1],
            TensorInfo {
                name: "decoder.ln.weight".into(),
                dims: vec![3, 2],
                ftype: 1
            }
        );
        assert!(inspect(&file[..file.len() - 1]).is_none());
        assert!(inspect(b"not a model").is_none());
        // A Q8_0 tensor: 2 blocks of 34 bytes.
        let mut q = file.clone();
        let values: Vec<f32> = (0..64).map(|i| i as f32 / 10.0).collect();
        write_tensor(
            &mut q,
            "decoder.blocks.0.mlp.0.weight",
            &[2, 32],
            Ftype::Q8_0,
            &quantize_q8_0(&values),
        )
        .unwrap();
        assert_eq!(q.len(), file.len() + 4 * 5 + 29 + 68);
        assert_eq!(inspect(&q).unwrap().2[2].ftype, 8);
    }

    #[test]
    fn q8_0_blocks_hold_each_value_within_half_a_step() {
        let values: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .chain(std::iter::repeat_n(0.0, 32))
            .collect();
        let bytes = quantize_q8_0(&values);
        assert_eq!(bytes.len(), 4 * 34);
        for (block, chunk) in values.chunks(32).zip(bytes.chunks(34)) {
            let scale = half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32();
            let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((scale - max / 127.0).abs() <= max / 127.0 * 1e-3);
            for (v, q) in block.iter().zip(&chunk[2..]) {
                let back = f32::from(*q as i8) * scale;
                assert!(
                    (back - v).abs() <= scale * 0.5 + max * 1e-3,
                    "{v} -> {back}"
                );
            }
        }
        // An all-zero block: scale 0, every byte 0.
        assert!(bytes[3 * 34..].iter().all(|b| *b == 0));
    }
}
