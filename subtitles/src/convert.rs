//! CTranslate2 Whisper weights -> whisper.cpp's ggml file. The fused projections are split
//! (self-attention `linear_0` into query/key/value, cross-attention `linear_1` into key/value;
//! Whisper's keys have no bias), layer-norm gamma/beta become weight/bias, conv biases become
//! (n, 1), 2-D and conv weights are written f16 (or the 2-D ones Q8_0, [`Weights::Q8_0`]) and
//! everything else f32, with the mel filterbank and the byte-level vocabulary in front.

use crate::ct2::{self, Ct2Error, Dtype, Model, Variable};
use crate::ggml::{self, Ftype, Hparams};
use crate::{mel, vocab};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not a CTranslate2 model: {0}")]
    Model(#[from] Ct2Error),
    #[error("not a Whisper model (spec {0:?})")]
    Spec(String),
    #[error("the model has no variable {0:?}")]
    Missing(String),
    #[error("variable {0:?} has an unexpected shape {1:?}")]
    Shape(String, Vec<usize>),
    #[error("the vocabulary is not byte-level BPE text")]
    Vocabulary,
    #[error("writing the ggml file: {0}")]
    Io(#[from] std::io::Error),
}

/// How the weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// Half precision: the CTranslate2 files' own precision, nothing lost.
    #[default]
    F16,
    /// ggml's 8-bit blocks (a scale per 32 values), as whisper.cpp's own quantizer writes
    /// them: half the memory traffic of f16 in every matrix product, at a rounding error
    /// below half a step of each block's scale. Convolutions stay f16 (whisper.cpp wants
    /// them so), positions and norms f32.
    Q8_0,
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub hparams: Hparams,
    pub tensors: usize,
}

struct Writer<'m, 'a, W: Write> {
    model: &'m Model<'a>,
    out: W,
    tensors: usize,
    weights: Weights,
}

impl<'a, W: Write> Writer<'_, 'a, W> {
    fn var(&self, name: &str) -> Result<&Variable<'a>, ConvertError> {
        self.model
            .variables
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    }

    fn floats(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
        let v = self.var(name)?;
        let data = v
            .to_f32()
            .ok_or_else(|| ConvertError::Shape(name.to_owned(), v.shape.clone()))?;
        Ok((v.shape.clone(), data))
    }

    /// Writes `values` (row-major `shape`): matrices in the chosen [`Weights`], convolutions
    /// f16, the rest f32.
    fn emit(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
        force_f32: bool,
    ) -> Result<(), ConvertError> {
        let matrix = shape.len() == 2 && !force_f32;
        let (ftype, bytes): (Ftype, Vec<u8>) = if matrix && self.weights == Weights::Q8_0 {
            // Rows of every Whisper size are whole blocks; a model that breaks that is not one
            // whisper.cpp could load quantized.
            if shape[1] % ggml::Q8_0_BLOCK != 0 {
                return Err(ConvertError::Shape(name.to_owned(), shape.to_vec()));
            }
            (Ftype::Q8_0, ggml::quantize_q8_0(values))
        } else if shape.len() >= 2 && !force_f32 {
            (
                Ftype::F16,
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            )
        } else {
            (
                Ftype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        };
        ggml::write_tensor(&mut self.out, name, shape, ftype, &bytes)?;
        self.tensors += 1;
        Ok(())
    }

    fn copy(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        let (shape, data) = self.floats(from)?;
        self.emit(to, &shape, &data, false)
    }

    fn norm(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{from}/gamma"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/beta"), &format!("{to}.bias"))
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{from}/weight"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"))
    }

    /// A block's self-attention: its layer norm, the fused q/k/v split, the output projection.
    fn self_attention(&mut self, src: &str, dst: &str) -> Result<(), ConvertError> {
        self.norm(
            &format!("{src}/self_attention/layer_norm"),
            &format!("{dst}.attn_ln"),
        )?;
        let (q, k, v) = (
            format!("{dst}.attn.query"),
            format!("{dst}.attn.key"),
            format!("{dst}.attn.value"),
        );
        self.split(
            &format!("{src}/self_attention/linear_0"),
            &[(&q, true), (&k, false), (&v, true)],
        )?;
        self.linear(
            &format!("{src}/self_attention/linear_1"),
            &format!("{dst}.attn.out"),
        )
    }

    /// A block's feed-forward network: layer norm and two linear layers.
    fn ffn(&mut self, src: &str, dst: &str) -> Result<(), ConvertError> {
        self.norm(&format!("{src}/ffn/layer_norm"), &format!("{dst}.mlp_ln"))?;
        self.linear(&format!("{src}/ffn/linear_0"), &format!("{dst}.mlp.0"))?;
        self.linear(&format!("{src}/ffn/linear_1"), &format!("{dst}.mlp.2"))
    }

    /// Splits a fused projection into `names` (equal row blocks); `None` names drop a bias.
    fn split(&mut self, from: &str, names: &[(&str, bool)]) -> Result<(), ConvertError> {
        let parts = names.len();
        let (shape, w) = self.floats(&format!("{from}/weight"))?;
        let (bshape, b) = self.floats(&format!("{from}/bias"))?;
        if shape.len() != 2 || shape[0] % parts != 0 || bshape != [shape[0]] {
            return Err(ConvertError::Shape(format!("{from}/weight"), shape));
        }
        let rows = shape[0] / parts;
        for (i, (name, with_bias)) in names.iter().enumerate() {
            let block = &w[i * rows * shape[1]..(i + 1) * rows * shape[1]];
            self.emit(&format!("{name}.weight"), &[rows, shape[1]], block, false)?;
            if *with_bias {
                self.emit(
                    &format!("{name}.bias"),
                    &[rows],
                    &b[i * rows..(i + 1) * rows],
                    false,
                )?;
            }
        }
        Ok(())
    }
}

fn scalar(model: &Model<'_>, name: &str) -> Result<i32, ConvertError> {
    let v = model
        .variables
        .get(name)
        .ok_or_else(|| ConvertError::Missing(name.to_owned()))?;
    v.scalar()
        .and_then(|s| i32::try_from(s).ok())
        .ok_or_else(|| ConvertError::Shape(name.to_owned(), v.shape.clone()))
}

fn dims(model: &Model<'_>, name: &str, rank: usize) -> Result<Vec<usize>, ConvertError> {
    let v = model
        .variables
        .get(name)
        .ok_or_else(|| ConvertError::Missing(name.to_owned()))?;
    if v.shape.len() != rank || !matches!(v.dtype, Dtype::F16 | Dtype::F32 | Dtype::Bf16) {
        return Err(ConvertError::Shape(name.to_owned(), v.shape.clone()));
    }
    Ok(v.shape.clone())
}

fn count_layers(model: &Model<'_>, side: &str) -> i32 {
    (0..)
        .take_while(|i| {
            model
                .variables
                .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
        })
        .count() as i32
}

/// Converts `model_bin` (CTranslate2) with its `vocabulary.txt` into a ggml file on `out`.
pub fn convert(
    model_bin: &[u8],
    vocabulary: &str,
    out: impl Write,
) -> Result<Converted, ConvertError> {
    convert_with(model_bin, vocabulary, Weights::F16, out)
}

/// [`convert`] with the weight matrices stored as `weights` says.
pub fn convert_with(
    model_bin: &[u8],
    vocabulary: &str,
    weights: Weights,
    out: impl Write,
) -> Result<Converted, ConvertError> {
    let model = ct2::parse(model_bin)?;
    if model.spec != "WhisperSpec" {
        return Err(ConvertError::Spec(model.spec));
    }
    let embed = dims(&model, "decoder/embeddings/weight", 2)?;
    let audio_pos = dims(&model, "encoder/position_encodings/encodings", 2)?;
    let text_pos = dims(&model, "decoder/position_encodings/encodings", 2)?;
    let conv1 = dims(&model, "encoder/conv1/weight", 3)?;
    let to_i32 = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    let hparams = Hparams {
        n_vocab: to_i32(embed[0]),
        n_audio_ctx: to_i32(audio_pos[0]),
        n_audio_state: to_i32(audio_pos[1]),
        n_audio_head: scalar(&model, "encoder/num_heads")?,
        n_audio_layer: count_layers(&model, "encoder"),
        n_text_ctx: to_i32(text_pos[0]),
        n_text_state: to_i32(text_pos[1]),
        n_text_head: scalar(&model, "decoder/num_heads")?,
        n_text_layer: count_layers(&model, "decoder"),
        n_mels: to_i32(conv1[1]),
        ftype: match weights {
            Weights::F16 => 1,
            Weights::Q8_0 => ggml::MODEL_Q8_0,
        },
    };
    let tokens = vocab::token_bytes(vocabulary).ok_or(ConvertError::Vocabulary)?;
    let n_mels = conv1[1];
    let mut w = Writer {
        model: &model,
        out,
        tensors: 0,
        weights,
    };
    ggml::write_header(
        &mut w.out,
        &hparams,
        mel::N_FFT / 2 + 1,
        &mel::filterbank(n_mels),
        &tokens,
    )?;

    // Encoder.
    w.copy("encoder/conv1/weight", "encoder.conv1.weight")?;
    for conv in ["conv1", "conv2"] {
        if conv == "conv2" {
            w.copy("encoder/conv2/weight", "encoder.conv2.weight")?;
        }
        let (shape, bias) = w.floats(&format!("encoder/{conv}/bias"))?;
        w.emit(&format!("encoder.{conv}.bias"), &[shape[0], 1], &bias, true)?;
    }
    let (shape, pos) = w.floats("encoder/position_encodings/encodings")?;
    w.emit("encoder.positional_embedding", &shape, &pos, true)?;
    for i in 0..hparams.n_audio_layer {
        let (src, dst) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        w.self_attention(&src, &dst)?;
        w.ffn(&src, &dst)?;
    }
    w.norm("encoder/layer_norm", "encoder.ln_post")?;

    // Decoder.
    let (shape, pos) = w.floats("decoder/position_encodings/encodings")?;
    w.emit("decoder.positional_embedding", &shape, &pos, true)?;
    w.copy(
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
    )?;
    for i in 0..hparams.n_text_layer {
        let (src, dst) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        w.self_attention(&src, &dst)?;
        w.norm(
            &format!("{src}/attention/layer_norm"),
            &format!("{dst}.cross_attn_ln"),
        )?;
        w.linear(
            &format!("{src}/attention/linear_0"),
            &format!("{dst}.cross_attn.query"),
        )?;
        let (ck, cv) = (
            format!("{dst}.cross_attn.key"),
            format!("{dst}.cross_attn.value"),
        );
        w.split(
            &format!("{src}/attention/linear_1"),
            &[(&ck, false), (&cv, true)],
        )?;
        w.linear(
            &format!("{src}/attention/linear_2"),
            &format!("{dst}.cross_attn.out"),
        )?;
        w.ffn(&src, &dst)?;
    }
    w.norm("decoder/layer_norm", "decoder.ln")?;
    w.out.flush()?;
    Ok(Converted {
        hparams,
        tensors: w.tensors,
    })
}
