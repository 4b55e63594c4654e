//! WHIP publisher and WHEP subscriber clients built on the `webrtc` crate's defaults, as a
//! third-party integrator would write them.

use anyhow::{Context, bail};
use bytes::{BufMut, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

/// Common time base of send stamps and receive times (one process).
pub static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

pub fn micros_now() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

struct Events {
    gathering: watch::Sender<RTCIceGatheringState>,
    tracks: tokio::sync::mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        self.gathering.send_replace(s);
    }
    async fn on_track(&self, t: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(t);
    }
}

pub(crate) type Built = (
    Arc<dyn PeerConnection>,
    watch::Receiver<RTCIceGatheringState>,
    tokio::sync::mpsc::Receiver<Arc<dyn TrackRemote>>,
);

pub(crate) async fn peer() -> anyhow::Result<Built> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let (gtx, grx) = watch::channel(RTCIceGatheringState::New);
    let (ttx, trx) = tokio::sync::mpsc::channel(4);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .build(),
        )
        .with_handler(Arc::new(Events {
            gathering: gtx,
            tracks: ttx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await?;
    Ok((Arc::new(pc), grx, trx))
}

pub(crate) async fn negotiate(
    http: &reqwest::Client,
    pc: &Arc<dyn PeerConnection>,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
    url: &str,
    key: Option<&str>,
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    gathering
        .wait_for(|s| *s == RTCIceGatheringState::Complete)
        .await?;
    let sdp = pc.local_description().await.context("no offer")?.sdp;
    let mut req = http
        .post(url)
        .header("content-type", "application/sdp")
        .body(sdp);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await?;
    if r.status() != 201 {
        bail!(
            "{url}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let location = r
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?
        .to_owned();
    let answer = r.text().await?;
    pc.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    let base = url.split("/wh").next().unwrap_or(url);
    Ok(format!("{base}{location}"))
}

/// Publishes synthetic VP8 at a fixed bitrate; each payload carries its send time.
pub struct Publisher {
    pc: Arc<dyn PeerConnection>,
    location: String,
    http: reqwest::Client,
    pub sent: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
}

/// Bytes of each synthetic video packet's payload.
const PAYLOAD: usize = 1000;
/// One keyframe per second of packets.
const KEYFRAME_EVERY: u64 = 180;
/// Offset of the send time (u64 microseconds since [`EPOCH`]) in every payload.
const STAMP_AT: usize = 14;

impl Publisher {
    pub async fn start(
        http: &reqwest::Client,
        whip: &str,
        key: &str,
        kbps: u64,
    ) -> anyhow::Result<Self> {
        let (pc, mut gathering, _) = peer().await?;
        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "lt".into(),
            "video".into(),
            "video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90_000,
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await?;
        let location = negotiate(http, &pc, &mut gathering, whip, Some(key)).await?;
        let sent = Arc::new(AtomicU64::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let pps = (kbps * 1000 / 8 / PAYLOAD as u64).max(1);
        let (counter, cancel) = (Arc::clone(&sent), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / pps));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq: u16 = rand::random();
            for n in 0u64.. {
                tokio::select! { _ = cancel.cancelled() => return, _ = tick.tick() => {} }
                let mut payload = BytesMut::with_capacity(PAYLOAD);
                // RFC 7741 descriptor as browsers send it: X=1, S=1, I=1, 15-bit picture id.
                let picture_id = (n & 0x7fff) as u16;
                payload.put_u8(0x90);
                payload.put_u8(0x80);
                payload.put_u16(0x8000 | picture_id);
                // VP8 frame tag (bit 0 = inter frame), keyframe start code and 640x360.
                let key = n % KEYFRAME_EVERY == 0;
                payload.put_slice(&[u8::from(!key), 0x00, 0x00, 0x9d, 0x01, 0x2a]);
                payload.put_u16(640);
                payload.put_u16(360);
                debug_assert_eq!(payload.len(), STAMP_AT);
                payload.put_u64(micros_now());
                payload.resize(PAYLOAD, 0);
                let packet = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: 96,
                        sequence_number: seq,
                        timestamp: (n * 90_000 / pps) as u32,
                        ssrc,
                        ..Default::default()
                    },
                    payload: payload.freeze(),
                };
                if track.write_rtp(packet).await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                seq = seq.wrapping_add(1);
            }
        });
        Ok(Self {
            pc,
            location,
            http: http.clone(),
            sent,
            stop,
        })
    }

    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.http.delete(&self.location).send().await;
        let _ = self.pc.close().await;
    }
}

/// Counts what one subscriber receives and the delay of each packet.
pub struct Tally {
    pub received: AtomicU64,
    /// (send stamp, delay) in microseconds of packets received while recording.
    pub delays: Mutex<Vec<(u64, u32)>>,
    pub recording: std::sync::atomic::AtomicBool,
    /// When the subscriber sent its offer.
    pub started: Instant,
    /// How long its offer took to be answered (gathering its candidates, then the POST).
    pub answered: Duration,
    /// How long after its offer its first keyframe came (a decoder's first picture).
    pub first_keyframe: std::sync::OnceLock<Duration>,
}

/// Whether a payload of [`Publisher`]'s starts a keyframe (VP8 frame tag, after the
/// four-byte descriptor it writes).
fn starts_keyframe(payload: &[u8]) -> bool {
    payload.len() > 4 && payload[0] & 0x10 != 0 && payload[4] & 0x01 == 0
}

pub struct Subscriber {
    pc: Arc<dyn PeerConnection>,
    location: String,
    http: reqwest::Client,
    pub tally: Arc<Tally>,
}

impl Subscriber {
    pub async fn start(http: &reqwest::Client, whep: &str) -> anyhow::Result<Self> {
        let started = Instant::now();
        let (pc, mut gathering, mut tracks) = peer().await?;
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
        }
        let location = negotiate(http, &pc, &mut gathering, whep, None).await?;
        let tally = Arc::new(Tally {
            received: AtomicU64::new(0),
            delays: Mutex::default(),
            recording: Default::default(),
            started,
            answered: started.elapsed(),
            first_keyframe: Default::default(),
        });
        let t = Arc::clone(&tally);
        tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                let t = Arc::clone(&t);
                tokio::spawn(async move {
                    while let Some(ev) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(p) = ev
                            && p.payload.len() >= STAMP_AT + 8
                        {
                            t.received.fetch_add(1, Ordering::Relaxed);
                            if t.first_keyframe.get().is_none() && starts_keyframe(&p.payload) {
                                let _ = t.first_keyframe.set(t.started.elapsed());
                            }
                            if t.recording.load(Ordering::Relaxed) {
                                let stamp = u64::from_be_bytes(
                                    p.payload[STAMP_AT..STAMP_AT + 8].try_into().unwrap(),
                                );
                                let delay = micros_now().saturating_sub(stamp) as u32;
                                t.delays.lock().unwrap().push((stamp, delay));
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            pc,
            location,
            http: http.clone(),
            tally,
        })
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.location).send().await;
        let _ = self.pc.close().await;
    }
}

/// Waits until a subscriber has its first keyframe.
pub async fn wait_first_keyframe(sub: &Subscriber, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while sub.tally.first_keyframe.get().is_none() {
        if Instant::now() > deadline {
            bail!("the first subscriber got no keyframe in {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until every subscriber has received a packet.
pub async fn wait_all_receiving(subs: &[Subscriber], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let waiting = subs
            .iter()
            .filter(|s| s.tally.received.load(Ordering::Relaxed) == 0)
            .count();
        if waiting == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{waiting} of {} subscribers received nothing", subs.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
