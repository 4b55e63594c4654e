//! The 80-bin mel filterbank Whisper's front end uses: librosa's `filters.mel(sr=16000,
//! n_fft=400, n_mels=80)` with the Slaney mel scale and Slaney area normalisation, which the
//! ggml file carries so whisper.cpp computes the same features as the model was trained on.

/// Sample rate of Whisper's audio.
pub const SAMPLE_RATE: f64 = 16_000.0;
/// FFT size; the filters have `N_FFT / 2 + 1` columns.
pub const N_FFT: usize = 400;

/// Slaney's scale: mels per Hz below 1 kHz (linear part)...
const F_SP: f64 = 200.0 / 3.0;
/// ...and where the logarithmic part starts.
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Slaney's mel scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// `n_mels` rows of `N_FFT / 2 + 1` weights, row-major.
pub fn filterbank(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let fft_hz: Vec<f64> = (0..bins)
        .map(|i| i as f64 * (SAMPLE_RATE / 2.0) / (bins - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let mel_hz: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = Vec::with_capacity(n_mels * bins);
    for m in 0..n_mels {
        let (left, center, right) = (mel_hz[m], mel_hz[m + 1], mel_hz[m + 2]);
        let norm = 2.0 / (right - left);
        for &f in &fft_hz {
            let rising = (f - left) / (center - left);
            let falling = (right - f) / (right - center);
            out.push((rising.min(falling).max(0.0) * norm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_round_trips_and_filters_are_triangles() {
        for hz in [0.0, 440.0, 1000.0, 3000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
        let f = filterbank(80);
        assert_eq!(f.len(), 80 * 201);
        assert!(f.iter().all(|w| *w >= 0.0));
        // Every filter has weight somewhere, and none at 0 Hz but the first may touch it.
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().any(|w| *w > 0.0), "filter {m} is empty");
        }
        // librosa's slaney filterbank, first filter's peak (bin 1 at 40 Hz): 0.02486...
        assert!((f[1] - 0.024_86).abs() < 1e-4, "{}", f[1]);
    }
}
