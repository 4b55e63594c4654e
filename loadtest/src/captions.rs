//! `captions`: live caption latency and capacity. N streams each publish the same speech (an
//! Ogg Opus file of known phrases, looped) over WHIP in real time, and one chat member per
//! stream receives its `caption` events. Per step: the final-caption latency (the end of a
//! phrase as sent -> the first final caption received after it) p50 and p95, the share of
//! phrases that got a final, the word error rate of the finals against the phrases, and the
//! server's CPU. Finals are matched to phrases by time: those arriving between a phrase's end
//! and the next phrase's end belong to it.

use crate::client::{micros_now, negotiate, peer};
use crate::report::append;
use crate::stats::CpuWindow;
use crate::wer::{edit_distance, words_of};
use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rtc::media::io::ogg_reader::OggReader;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::PeerConnection;

#[derive(clap::Args, Clone)]
pub struct CaptionsArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token.
    #[arg(long)]
    pub token: String,
    /// The speech: Ogg Opus, one 20 ms packet per page (ffmpeg -page_duration 20000).
    #[arg(long)]
    pub ogg: std::path::PathBuf,
    /// The phrases in it: JSON {"period": seconds, "phrases": [{"text", "start", "end"}]}.
    #[arg(long)]
    pub phrases: std::path::PathBuf,
    /// Stream counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub streams: Vec<usize>,
    /// Measurement window per step (after a warm-up of one loop of the speech).
    #[arg(long, default_value = "60")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Label of the rows (the server and model measured).
    #[arg(long, default_value = "vitrine")]
    pub label: String,
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(serde::Deserialize, Clone)]
struct Phrase {
    text: String,
    end: f64,
}

#[derive(serde::Deserialize, Clone)]
struct Script {
    period: f64,
    phrases: Vec<Phrase>,
}

#[derive(serde::Serialize)]
struct Row {
    label: String,
    streams: usize,
    seconds: u64,
    phrases: usize,
    captioned_ratio: f64,
    latency_p50_s: f64,
    latency_p95_s: f64,
    wer: f64,
    server_cpu_per_s: f64,
    /// Decode steps the server lengthened because its Transcriber pool was saturated.
    degraded_steps: f64,
    /// Audio seconds the server dropped uncaptioned.
    dropped_audio_s: f64,
}

/// A counter of the server's `/metrics` (0 when absent).
async fn counter(http: &reqwest::Client, server: &str, name: &str) -> f64 {
    let Ok(r) = http.get(format!("{server}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

const DEGRADED: &str = "vitrine_subtitles_degraded_steps_total";
const DROPPED: &str = "vitrine_subtitles_dropped_audio_seconds_total";

/// A final caption as received: when (microseconds, the generator's clock) and what.
type Final = (u64, String);

pub async fn run(args: &CaptionsArgs) -> anyhow::Result<()> {
    let script: Script = serde_json::from_slice(
        &std::fs::read(&args.phrases).with_context(|| format!("{}", args.phrases.display()))?,
    )?;
    let ogg = std::fs::read(&args.ogg).with_context(|| format!("{}", args.ogg.display()))?;
    let http = reqwest::Client::new();
    for &n in &args.streams {
        let mut legs = Vec::new();
        for i in 0..n {
            legs.push(Leg::start(&http, args, &format!("captions {n}.{i}"), ogg.clone()).await?);
        }
        // Warm-up: one loop of the speech (the first decode of each stream, the pool filling).
        tokio::time::sleep(Duration::from_secs_f64(script.period)).await;
        let from = micros_now();
        let cpu = CpuWindow::start(&args.server_pid);
        let degraded = counter(&http, &args.server, DEGRADED).await;
        let dropped = counter(&http, &args.server, DROPPED).await;
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let used = cpu.finish();
        let degraded = counter(&http, &args.server, DEGRADED).await - degraded;
        let dropped = counter(&http, &args.server, DROPPED).await - dropped;
        let until = micros_now();
        // Finals of phrases that ended in the window may still be on their way.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (mut latencies, mut errors, mut words, mut phrases, mut captioned) =
            (Vec::new(), 0.0, 0usize, 0usize, 0usize);
        for leg in &legs {
            let finals = leg.finals.lock().expect("finals").clone();
            let started = leg.started.lock().expect("start").unwrap_or(from);
            for (end, next_end, text) in occurrences(&script, started, from, until) {
                phrases += 1;
                let heard: Vec<&Final> = finals
                    .iter()
                    .filter(|(at, _)| *at + 500_000 >= end && *at + 500_000 < next_end)
                    .collect();
                let reference = words_of(&text);
                words += reference.len();
                let hypothesis: Vec<String> = heard.iter().flat_map(|(_, t)| words_of(t)).collect();
                errors += edit_distance(&reference, &hypothesis) as f64;
                if let Some((at, _)) = heard.first() {
                    captioned += 1;
                    latencies.push(at.saturating_sub(end) as f64 / 1e6);
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let pick = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let row = Row {
            label: args.label.clone(),
            streams: n,
            seconds: args.seconds,
            phrases,
            captioned_ratio: captioned as f64 / phrases.max(1) as f64,
            latency_p50_s: pick(0.5),
            latency_p95_s: pick(0.95),
            wer: errors / words.max(1) as f64,
            server_cpu_per_s: used.server_per_s.unwrap_or(f64::NAN),
            degraded_steps: degraded,
            dropped_audio_s: dropped,
        };
        append(&args.out, &row)?;
        for leg in legs {
            leg.close(&http).await;
        }
    }
    Ok(())
}

/// Each phrase occurrence ending inside [from, until): (its end, the next phrase's end, its
/// text), in the generator's clock, for a stream whose speech started at `started`.
fn occurrences(script: &Script, started: u64, from: u64, until: u64) -> Vec<(u64, u64, String)> {
    let period = (script.period * 1e6) as u64;
    let mut out = Vec::new();
    for k in 0.. {
        let base = started + k * period;
        if base > until {
            break;
        }
        for (i, p) in script.phrases.iter().enumerate() {
            let end = base + (p.end * 1e6) as u64;
            let next = match script.phrases.get(i + 1) {
                Some(n) => base + (n.end * 1e6) as u64,
                None => base + period + (script.phrases[0].end * 1e6) as u64,
            };
            if end >= from && end < until {
                out.push((end, next, p.text.clone()));
            }
        }
    }
    out
}

/// One stream: its publisher and its chat member.
struct Leg {
    pc: Arc<dyn PeerConnection>,
    location: String,
    stop: tokio_util::sync::CancellationToken,
    finals: Arc<Mutex<Vec<Final>>>,
    /// When the first packet of the speech was sent.
    started: Arc<Mutex<Option<u64>>>,
}

impl Leg {
    async fn start(
        http: &reqwest::Client,
        args: &CaptionsArgs,
        title: &str,
        ogg: Vec<u8>,
    ) -> anyhow::Result<Self> {
        let created: serde_json::Value = http
            .post(format!("{}/api/v1/streams", args.server))
            .bearer_auth(&args.token)
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"].as_str().context("stream id")?.to_owned();
        let whip = created["whip_url"].as_str().context("whip_url")?.to_owned();
        let key = created["stream_key"]
            .as_str()
            .context("stream_key")?
            .to_owned();
        let stop = tokio_util::sync::CancellationToken::new();
        let finals = Arc::new(Mutex::new(Vec::new()));
        // The chat member first, so no caption is missed.
        let ws_url = format!(
            "{}/ws/streams/{id}/chat",
            args.server.replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            r#"{"type":"hello"}"#.into(),
        ))
        .await?;
        let (sink, cancel) = (Arc::clone(&finals), stop.clone());
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! { m = ws.next() => m, _ = cancel.cancelled() => return };
                let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = msg else {
                    if msg.is_none() {
                        return;
                    }
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                    continue;
                };
                if v["type"] == "caption" && v["kind"] == "final" {
                    let text = v["text"].as_str().unwrap_or_default().to_owned();
                    sink.lock().expect("finals").push((micros_now(), text));
                }
            }
        });
        let (pc, mut gathering, _) = peer().await?;
        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "lt".into(),
            "audio".into(),
            "audio".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await?;
        let location = negotiate(http, &pc, &mut gathering, &whip, Some(&key)).await?;
        let started = Arc::new(Mutex::new(None));
        let (first, cancel) = (Arc::clone(&started), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = send_speech(&track, &ogg, ssrc, &first, &cancel).await {
                eprintln!("publisher: {e:#}");
            }
        });
        Ok(Self {
            pc,
            location,
            stop,
            finals,
            started,
        })
    }

    async fn close(self, http: &reqwest::Client) {
        self.stop.cancel();
        let _ = http.delete(&self.location).send().await;
        let _ = self.pc.close().await;
    }
}

/// Sends the Ogg Opus pages as RTP in real time, looping, until cancelled.
async fn send_speech(
    track: &TrackLocalStaticRTP,
    ogg: &[u8],
    ssrc: u32,
    started: &Mutex<Option<u64>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut seq, mut timestamp): (u16, u32) = (rand::random(), rand::random());
    let mut last_granule = 0u64;
    loop {
        let (mut reader, _) = OggReader::new(std::io::Cursor::new(ogg), true)
            .map_err(|e| anyhow::anyhow!("ogg: {e}"))?;
        let mut first_loop_page = true;
        while let Ok((page, header)) = reader.parse_next_page() {
            // OpusHead and OpusTags pages carry no audio.
            if page.starts_with(b"OpusHead") || page.starts_with(b"OpusTags") {
                continue;
            }
            if first_loop_page {
                last_granule = header.granule_position.saturating_sub(960);
                first_loop_page = false;
            }
            let samples = header.granule_position.saturating_sub(last_granule).max(1) as u32;
            last_granule = header.granule_position;
            tokio::select! { _ = cancel.cancelled() => return Ok(()), _ = tick.tick() => {} }
            started
                .lock()
                .expect("start")
                .get_or_insert_with(micros_now);
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: false,
                    payload_type: 111,
                    sequence_number: seq,
                    timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: page.freeze(),
            };
            let _ = track.write_rtp(packet).await;
            seq = seq.wrapping_add(1);
            timestamp = timestamp.wrapping_add(samples);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrase_occurrences_and_word_errors() {
        let script = Script {
            period: 10.0,
            phrases: vec![
                Phrase {
                    text: "one".into(),
                    end: 2.0,
                },
                Phrase {
                    text: "two".into(),
                    end: 6.0,
                },
            ],
        };
        let o = occurrences(&script, 1_000_000, 5_000_000, 14_000_000);
        let ends: Vec<u64> = o.iter().map(|x| x.0).collect();
        assert_eq!(ends, vec![7_000_000, 13_000_000]);
        assert_eq!(o[0].1, 13_000_000);
    }
}
