//! The size of a publisher's picture, read from the first keyframe's RTP payload before anything
//! is decoded, so the ladder can be planned when the pipeline is built: the H.264 sequence
//! parameter set (single NAL or STAP-A) or the VP8 keyframe header. Pure functions over bytes.

use vitrine_sfu::codec::{Codec, h264_nal_units, vp8_frame_start};

/// Width and height announced by this RTP payload, when it carries them.
pub fn picture_size(codec: Codec, payload: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::H264 => h264_sps(payload).and_then(sps_size),
        Codec::Vp8 => vp8_size(payload),
        Codec::Opus => None,
    }
}

fn vp8_size(p: &[u8]) -> Option<(u32, u32)> {
    let f = &p[vp8_frame_start(p)?..];
    if f.len() < 10 || f[0] & 0x01 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([f[6], f[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([f[8], f[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

const NAL_SPS: u8 = 7;

/// The whole SPS NAL unit carried in this payload, alone or aggregated.
fn h264_sps(p: &[u8]) -> Option<&[u8]> {
    h264_nal_units(p)
        .find(|(nal, _)| nal[0] & 0x1f == NAL_SPS)
        .and_then(|(nal, whole)| whole.then_some(nal))
}

/// Reads bits MSB first from an RBSP (emulation prevention already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// Exp-Golomb unsigned (ue(v)).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// Exp-Golomb signed (se(v)); only its length matters here.
    fn se(&mut self) -> Option<()> {
        self.ue().map(|_| ())
    }
}

/// Removes the `00 00 03` emulation prevention bytes of a NAL unit.
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Picture size from an SPS (ITU-T H.264 7.3.2.1.1), cropping applied.
fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let data = rbsp(nal.get(1..)?);
    let mut b = Bits {
        data: &data,
        pos: 0,
    };
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, level
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = b.ue()?;
        if chroma_format == 3 {
            b.bit()?; // separate_colour_plane_flag
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            let code = i64::from(b.ue()?);
                            let delta = if code % 2 == 1 {
                                (code + 1) / 2
                            } else {
                                -(code / 2)
                            };
                            next = (last + delta).rem_euclid(256);
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            for _ in 0..b.ue()?.min(255) {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = b.ue()?.checked_add(1)?;
    let height_units = b.ue()?.checked_add(1)?;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if b.bit()? == 1 {
        (left, right, top, bottom) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_w;
    let crop_y = sub_h * (2 - frame_mbs_only);
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(left.checked_add(right)?.checked_mul(crop_x)?)?;
    let height = height_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(top.checked_add(bottom)?.checked_mul(crop_y)?)?;
    (width > 0 && height > 0).then_some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the fields of a minimal SPS, the way an encoder would.
    #[derive(Default)]
    struct Writer {
        bits: Vec<u8>,
    }

    impl Writer {
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bits.push(((v >> i) & 1) as u8);
            }
        }
        fn ue(&mut self, v: u32) {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.bits(0, len - 1);
            self.bits(x, len);
        }
        fn bytes(mut self) -> Vec<u8> {
            self.bits.push(1); // rbsp_stop_one_bit
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(0);
            }
            self.bits
                .chunks(8)
                .map(|c| c.iter().fold(0, |a, b| (a << 1) | b))
                .collect()
        }
    }

    fn sps(profile: u32, width_mbs: u32, height_mbs: u32, crop_bottom: u32) -> Vec<u8> {
        let mut w = Writer::default();
        w.bits(profile, 8);
        w.bits(0xc01f, 16);
        w.ue(0);
        if profile == 100 {
            w.ue(1); // 4:2:0
            w.ue(0);
            w.ue(0);
            w.bits(0, 1);
            w.bits(0, 1); // no scaling matrices
        }
        w.ue(0);
        w.ue(0); // poc type 0
        w.ue(2);
        w.ue(1);
        w.bits(0, 1);
        w.ue(width_mbs - 1);
        w.ue(height_mbs - 1);
        w.bits(1, 1); // frame_mbs_only
        w.bits(1, 1);
        if crop_bottom > 0 {
            w.bits(1, 1);
            for v in [0, 0, 0, crop_bottom] {
                w.ue(v);
            }
        } else {
            w.bits(0, 1);
        }
        w.bits(0, 1); // no VUI
        let mut nal = vec![0x67];
        nal.extend(w.bytes());
        nal
    }

    #[test]
    fn h264_sizes_with_and_without_cropping() {
        assert_eq!(
            picture_size(Codec::H264, &sps(66, 80, 45, 0)),
            Some((1280, 720))
        );
        // 1080p is coded as 1088 lines with 8 cropped (4 chroma units).
        assert_eq!(
            picture_size(Codec::H264, &sps(100, 120, 68, 4)),
            Some((1920, 1080))
        );
        // Inside a STAP-A after nothing else.
        let nal = sps(66, 40, 30, 0);
        let mut stap = vec![24u8];
        stap.extend((nal.len() as u16).to_be_bytes());
        stap.extend(&nal);
        stap.extend([0, 2, 0x68, 0xce]);
        assert_eq!(picture_size(Codec::H264, &stap), Some((640, 480)));
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3, 0]), vec![0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn vp8_keyframe_header() {
        // Descriptor (S=1, PID 0), frame tag with key bit 0, start code, 640x360.
        let mut p = vec![0x10, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a];
        p.extend(640u16.to_le_bytes());
        p.extend(360u16.to_le_bytes());
        assert_eq!(picture_size(Codec::Vp8, &p), Some((640, 360)));
        p[1] |= 1; // an inter frame
        assert_eq!(picture_size(Codec::Vp8, &p), None);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 7) as u8).collect();
            let _ = picture_size(Codec::H264, &junk);
            let _ = picture_size(Codec::Vp8, &junk);
            let mut stap = vec![24u8, 0xff, 0xff];
            stap.extend(&junk);
            let _ = picture_size(Codec::H264, &stap);
            let mut s = vec![0x67];
            s.extend(&junk);
            let _ = picture_size(Codec::H264, &s);
        }
    }
}
