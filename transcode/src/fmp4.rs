//! A fragmented-MP4 (CMAF) writer for one track per file: the initialisation segment
//! (`ftyp` + `moov`) and media fragments (`moof` + `mdat`) as ISO/IEC 14496-12 lays them out.
//! GStreamer 1.22 has no CMAF muxer, and LL-HLS needs fragments cut exactly where the
//! segmenter says, so this is pure Rust over bytes, tested without any pipeline.

use bytes::{BufMut, Bytes, BytesMut};

/// What the single track of a rendition carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    /// H.264 with its `avcC` record (the `codec_data` of length-prefixed `avc` caps).
    Video {
        width: u16,
        height: u16,
        avcc: Bytes,
    },
    /// AAC with its AudioSpecificConfig.
    Audio {
        sample_rate: u32,
        channels: u16,
        asc: Bytes,
    },
}

/// One track: all fragments of a rendition share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Ticks per second of every time in the track.
    pub timescale: u32,
    pub kind: TrackKind,
}

/// One access unit (a video frame or an AAC frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in track ticks.
    pub dts: u64,
    /// Ticks until the next sample.
    pub duration: u32,
    /// A sync sample: decoding can start here.
    pub keyframe: bool,
    /// Length-prefixed NAL units, or one raw AAC frame.
    pub data: Bytes,
}

const TRACK_ID: u32 = 1;
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// `sample_depends_on = 2`: a sync sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_depends_on = 1` and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// Writes a box: size placeholder, type, contents, then the size.
fn mp4_box(buf: &mut BytesMut, kind: &[u8; 4], contents: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_slice(kind);
    contents(buf);
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box whose contents start with version and flags.
fn full_box(
    buf: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    contents: impl FnOnce(&mut BytesMut),
) {
    mp4_box(buf, kind, |b| {
        b.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        contents(b);
    });
}

impl Track {
    /// The RFC 6381 codec string of the master playlist's `CODECS` attribute.
    pub fn codecs(&self) -> String {
        match &self.kind {
            TrackKind::Video { avcc, .. } if avcc.len() >= 4 => {
                format!("avc1.{:02x}{:02x}{:02x}", avcc[1], avcc[2], avcc[3])
            }
            TrackKind::Video { .. } => "avc1.42e01e".into(),
            TrackKind::Audio { asc, .. } => {
                let object_type = asc.first().map_or(2, |b| b >> 3);
                format!("mp4a.40.{object_type}")
            }
        }
    }

    /// The initialisation segment (`EXT-X-MAP`).
    pub fn init_segment(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(1024);
        mp4_box(&mut b, b"ftyp", |b| {
            b.put_slice(b"iso6");
            b.put_u32(0);
            for brand in [b"iso6", b"cmfc", b"mp41"] {
                b.put_slice(brand);
            }
        });
        mp4_box(&mut b, b"moov", |b| {
            full_box(b, b"mvhd", 0, 0, |b| {
                b.put_u32(0); // creation
                b.put_u32(0); // modification
                b.put_u32(1000);
                b.put_u32(0); // duration: fragmented
                b.put_u32(0x0001_0000); // rate 1.0
                b.put_u16(0x0100); // volume 1.0
                b.put_bytes(0, 10);
                MATRIX.iter().for_each(|m| b.put_u32(*m));
                b.put_bytes(0, 24);
                b.put_u32(TRACK_ID + 1);
            });
            mp4_box(b, b"trak", |b| self.trak(b));
            mp4_box(b, b"mvex", |b| {
                full_box(b, b"trex", 0, 0, |b| {
                    b.put_u32(TRACK_ID);
                    b.put_u32(1); // sample description index
                    b.put_u32(0);
                    b.put_u32(0);
                    b.put_u32(0);
                });
            });
        });
        b.freeze()
    }

    fn trak(&self, b: &mut BytesMut) {
        let (width, height, audio) = match &self.kind {
            TrackKind::Video { width, height, .. } => (*width, *height, false),
            TrackKind::Audio { .. } => (0, 0, true),
        };
        full_box(b, b"tkhd", 0, 0x3, |b| {
            b.put_u32(0);
            b.put_u32(0);
            b.put_u32(TRACK_ID);
            b.put_u32(0);
            b.put_u32(0); // duration
            b.put_bytes(0, 8);
            b.put_u16(0); // layer
            b.put_u16(0); // alternate group
            b.put_u16(if audio { 0x0100 } else { 0 });
            b.put_u16(0);
            MATRIX.iter().for_each(|m| b.put_u32(*m));
            b.put_u32(u32::from(width) << 16);
            b.put_u32(u32::from(height) << 16);
        });
        mp4_box(b, b"mdia", |b| {
            full_box(b, b"mdhd", 0, 0, |b| {
                b.put_u32(0);
                b.put_u32(0);
                b.put_u32(self.timescale);
                b.put_u32(0);
                b.put_u16(0x55c4); // "und"
                b.put_u16(0);
            });
            full_box(b, b"hdlr", 0, 0, |b| {
                b.put_u32(0);
                b.put_slice(if audio { b"soun" } else { b"vide" });
                b.put_bytes(0, 12);
                b.put_slice(if audio {
                    b"Vitrine audio\0"
                } else {
                    b"Vitrine video\0"
                });
            });
            mp4_box(b, b"minf", |b| {
                if audio {
                    full_box(b, b"smhd", 0, 0, |b| b.put_u32(0));
                } else {
                    full_box(b, b"vmhd", 0, 1, |b| b.put_bytes(0, 8));
                }
                mp4_box(b, b"dinf", |b| {
                    full_box(b, b"dref", 0, 0, |b| {
                        b.put_u32(1);
                        full_box(b, b"url ", 0, 1, |_| {});
                    });
                });
                mp4_box(b, b"stbl", |b| {
                    full_box(b, b"stsd", 0, 0, |b| {
                        b.put_u32(1);
                        self.sample_entry(b);
                    });
                    full_box(b, b"stts", 0, 0, |b| b.put_u32(0));
                    full_box(b, b"stsc", 0, 0, |b| b.put_u32(0));
                    full_box(b, b"stsz", 0, 0, |b| b.put_u64(0));
                    full_box(b, b"stco", 0, 0, |b| b.put_u32(0));
                });
            });
        });
    }

    fn sample_entry(&self, b: &mut BytesMut) {
        match &self.kind {
            TrackKind::Video {
                width,
                height,
                avcc,
            } => mp4_box(b, b"avc1", |b| {
                b.put_bytes(0, 6);
                b.put_u16(1); // data reference index
                b.put_bytes(0, 16);
                b.put_u16(*width);
                b.put_u16(*height);
                b.put_u32(0x0048_0000); // 72 dpi
                b.put_u32(0x0048_0000);
                b.put_u32(0);
                b.put_u16(1); // frame count
                b.put_bytes(0, 32); // compressor name
                b.put_u16(0x0018); // depth
                b.put_i16(-1);
                mp4_box(b, b"avcC", |b| b.put_slice(avcc));
            }),
            TrackKind::Audio {
                sample_rate,
                channels,
                asc,
            } => mp4_box(b, b"mp4a", |b| {
                b.put_bytes(0, 6);
                b.put_u16(1);
                b.put_bytes(0, 8);
                b.put_u16(*channels);
                b.put_u16(16);
                b.put_u32(0);
                b.put_u32(sample_rate.min(&0xffff) << 16);
                full_box(b, b"esds", 0, 0, |b| esds(b, asc));
            }),
        }
    }

    /// One media fragment holding `samples` (at least one), numbered `sequence`.
    pub fn fragment(&self, sequence: u32, samples: &[Sample]) -> Bytes {
        let payload: usize = samples.iter().map(|s| s.data.len()).sum();
        let mut b = BytesMut::with_capacity(128 + 16 * samples.len() + payload);
        let mut data_offset_at = 0;
        mp4_box(&mut b, b"moof", |b| {
            full_box(b, b"mfhd", 0, 0, |b| b.put_u32(sequence));
            mp4_box(b, b"traf", |b| {
                // default-base-is-moof: data offsets count from this moof.
                full_box(b, b"tfhd", 0, 0x02_0000, |b| b.put_u32(TRACK_ID));
                full_box(b, b"tfdt", 1, 0, |b| {
                    b.put_u64(samples.first().map_or(0, |s| s.dts));
                });
                // data-offset, duration, size and flags per sample.
                full_box(b, b"trun", 0, 0x0000_0701, |b| {
                    b.put_u32(samples.len() as u32);
                    data_offset_at = b.len();
                    b.put_u32(0);
                    for s in samples {
                        b.put_u32(s.duration);
                        b.put_u32(s.data.len() as u32);
                        b.put_u32(if s.keyframe {
                            SYNC_SAMPLE
                        } else {
                            NON_SYNC_SAMPLE
                        });
                    }
                });
            });
        });
        let data_offset = (b.len() + 8) as u32;
        b[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
        b.put_u32((payload + 8) as u32);
        b.put_slice(b"mdat");
        for s in samples {
            b.put_slice(&s.data);
        }
        b.freeze()
    }
}

/// The MPEG-4 elementary stream descriptor of an AAC track (ISO/IEC 14496-1 7.2.6.5).
fn esds(b: &mut BytesMut, asc: &[u8]) {
    let asc = &asc[..asc.len().min(100)];
    let decoder_specific = 2 + asc.len();
    let decoder_config = 2 + 13 + decoder_specific;
    let es = 3 + 2 + decoder_config + 3;
    b.put_u8(0x03);
    b.put_u8(es as u8 - 2);
    b.put_u16(0); // ES_ID
    b.put_u8(0); // flags
    b.put_u8(0x04);
    b.put_u8(decoder_config as u8 - 2);
    b.put_u8(0x40); // MPEG-4 audio
    b.put_u8(0x15); // audio stream
    b.put_bytes(0, 3); // buffer size
    b.put_u32(0); // max bitrate
    b.put_u32(0); // average bitrate
    b.put_u8(0x05);
    b.put_u8(asc.len() as u8);
    b.put_slice(asc);
    b.put_u8(0x06); // SL config
    b.put_u8(0x01);
    b.put_u8(0x02);
}

/// Top-level boxes of a buffer as (type, offset, size); for tests and checks.
pub fn boxes(data: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        if size < 8 || at + size > data.len() {
            break;
        }
        out.push((data[at + 4..at + 8].try_into().expect("4 bytes"), at, size));
        at += size;
    }
    out
}

/// The payload of the first box found along `path` (each step a child box of the previous).
fn find_box<'a>(mut data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    for kind in path {
        let (_, at, size) = boxes(data).into_iter().find(|(k, _, _)| k == *kind)?;
        data = &data[at + 8..at + size];
    }
    Some(data)
}

/// Media time of a segment's first sample in nanoseconds: its first `tfdt` over the track's
/// timescale (`mdhd` of the init segment). `None` for what this packager did not write.
pub fn start_ns(init: &[u8], segment: &[u8]) -> Option<u64> {
    let mdhd = find_box(init, &[b"moov", b"trak", b"mdia", b"mdhd"])?;
    let timescale = match mdhd.first()? {
        0 => u32::from_be_bytes(mdhd.get(12..16)?.try_into().ok()?),
        _ => u32::from_be_bytes(mdhd.get(20..24)?.try_into().ok()?),
    };
    let tfdt = find_box(segment, &[b"moof", b"traf", b"tfdt"])?;
    let ticks = match tfdt.first()? {
        1 => u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?),
        _ => u64::from(u32::from_be_bytes(tfdt.get(4..8)?.try_into().ok()?)),
    };
    (timescale > 0).then(|| (u128::from(ticks) * 1_000_000_000 / u128::from(timescale)) as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 720p H.264 track (High profile, level 3.1); also used by the segmenter's tests.
    pub(crate) fn video() -> Track {
        Track {
            timescale: 90_000,
            kind: TrackKind::Video {
                width: 1280,
                height: 720,
                avcc: Bytes::from_static(&[1, 0x64, 0x00, 0x1f, 0xff, 0xe0, 0x00]),
            },
        }
    }

    fn find(data: &[u8], kind: &[u8; 4]) -> Option<usize> {
        data.windows(4).position(|w| w == kind).map(|p| p - 4)
    }

    #[test]
    fn codec_strings() {
        assert_eq!(video().codecs(), "avc1.64001f");
        let audio = Track {
            timescale: 48_000,
            kind: TrackKind::Audio {
                sample_rate: 48_000,
                channels: 2,
                asc: Bytes::from_static(&[0x11, 0x90]),
            },
        };
        assert_eq!(audio.codecs(), "mp4a.40.2");
        let init = audio.init_segment();
        let esds = find(&init, b"esds").unwrap();
        let size = u32::from_be_bytes(init[esds..esds + 4].try_into().unwrap()) as usize;
        // The descriptor lengths add up to the box.
        assert_eq!(init[esds + 13] as usize + 14, size);
        assert_eq!(&init[esds + size - 5..esds + size - 3], &[0x11, 0x90]);
    }

    #[test]
    fn init_segment_nests_exactly() {
        let init = video().init_segment();
        let top = boxes(&init);
        assert_eq!(
            top.iter().map(|b| &b.0).collect::<Vec<_>>(),
            vec![b"ftyp", b"moov"]
        );
        assert_eq!(top[1].1 + top[1].2, init.len());
        let (_, moov, size) = top[1];
        let inner = boxes(&init[moov + 8..moov + size]);
        assert_eq!(
            inner.iter().map(|b| &b.0).collect::<Vec<_>>(),
            vec![b"mvhd", b"trak", b"mvex"]
        );
        let tkhd = find(&init, b"tkhd").unwrap();
        // Width and height are 16.16 fixed point at the end of tkhd.
        let end = tkhd + 92;
        assert_eq!(
            u32::from_be_bytes(init[end - 8..end - 4].try_into().unwrap()),
            1280 << 16
        );
        assert_eq!(
            u32::from_be_bytes(init[end - 4..end].try_into().unwrap()),
            720 << 16
        );
    }

    #[test]
    fn fragment_offsets_point_at_the_samples() {
        let samples = vec![
            Sample {
                dts: 180_000,
                duration: 3000,
                keyframe: true,
                data: Bytes::from_static(b"key-frame"),
            },
            Sample {
                dts: 183_000,
                duration: 3000,
                keyframe: false,
                data: Bytes::from_static(b"delta"),
            },
        ];
        let frag = video().fragment(7, &samples);
        let top = boxes(&frag);
        assert_eq!(
            top.iter().map(|b| &b.0).collect::<Vec<_>>(),
            vec![b"moof", b"mdat"]
        );
        let trun = find(&frag, b"trun").unwrap();
        let count = u32::from_be_bytes(frag[trun + 12..trun + 16].try_into().unwrap());
        let offset = u32::from_be_bytes(frag[trun + 16..trun + 20].try_into().unwrap()) as usize;
        assert_eq!(count, 2);
        assert_eq!(&frag[offset..offset + 9], b"key-frame");
        assert_eq!(&frag[offset + 9..], b"delta");
        let tfdt = find(&frag, b"tfdt").unwrap();
        assert_eq!(
            u64::from_be_bytes(frag[tfdt + 12..tfdt + 20].try_into().unwrap()),
            180_000
        );
        // 180 000 ticks of 90 kHz: the segment starts 2 s into the media timeline.
        assert_eq!(
            start_ns(&video().init_segment(), &frag),
            Some(2_000_000_000)
        );
        assert_eq!(start_ns(&frag, &frag), None);
        assert_eq!(start_ns(b"junk", b"\0\0\0\x08moof"), None);
        let mfhd = find(&frag, b"mfhd").unwrap();
        assert_eq!(
            u32::from_be_bytes(frag[mfhd + 12..mfhd + 16].try_into().unwrap()),
            7
        );
    }
}
