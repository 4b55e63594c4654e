//! Clients that behave as the studio and watch pages do when their node goes away: they notice
//! (the connection closes or fails, or media stops for [`SILENCE`]) and post their offer again,
//! to the first entry URL that answers (as a load balancer in front of the nodes would send
//! them), following a 307 to the node the cluster chooses.

use crate::support::{self, Received, local_offer};
use bytes::Bytes;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vitrine_sfu::peer::{IceConfig, PeerEvents, PeerFactory};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};

/// Media stopping this long means the node is gone (the publisher sends 50 packets a second).
pub const SILENCE: Duration = Duration::from_millis(700);

/// A client's peer connections notice a dead node after 1 s without consent answers.
fn factory() -> PeerFactory {
    PeerFactory::new(IceConfig {
        ice_disconnected_timeout: Some(Duration::from_secs(1)),
        ..IceConfig::default()
    })
}

/// Posts `offer` to the first of `entries` that answers 201 (following redirects); returns
/// the answer and the base URL of the node that gave it.
async fn negotiate(
    http: &reqwest::Client,
    entries: &[String],
    key: Option<&str>,
    offer: &str,
) -> Option<(String, String)> {
    for entry in entries {
        let mut req = http
            .post(entry)
            .header("content-type", "application/sdp")
            .body(offer.to_owned());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let Ok(r) = req.send().await else { continue };
        if r.status() != 201 {
            continue;
        }
        let url = r.url();
        let node = format!("{}://{}", url.scheme(), url.authority());
        return Some((r.text().await.ok()?, node));
    }
    None
}

fn broken(state: RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Closed
            | RTCPeerConnectionState::Disconnected
    )
}

/// A viewer that moves to another node when its own goes away.
pub struct Viewer {
    /// Video packets with their arrival time.
    pub packets: mpsc::UnboundedReceiver<(Instant, Received)>,
    /// Times it had to connect again.
    pub reconnects: Arc<AtomicUsize>,
    /// The base URL of the node serving it now.
    pub node: Arc<Mutex<String>>,
    stop: CancellationToken,
}

impl Viewer {
    pub async fn start(entries: Vec<String>) -> Self {
        Self::start_with(entries, SILENCE).await
    }

    /// A viewer that takes `silence` without media for a dead node.
    pub async fn start_with(entries: Vec<String>, silence: Duration) -> Self {
        let (tx, packets) = mpsc::unbounded_channel();
        let reconnects = Arc::new(AtomicUsize::new(0));
        let node = Arc::new(Mutex::new(String::new()));
        let stop = CancellationToken::new();
        tokio::spawn(watch(
            entries,
            silence,
            tx,
            Arc::clone(&reconnects),
            Arc::clone(&node),
            stop.clone(),
        ));
        Self {
            packets,
            reconnects,
            node,
            stop,
        }
    }

    /// The next `n` video packets (bounded by the test's wait).
    pub async fn video(&mut self, n: usize) -> Vec<(Instant, Received)> {
        let mut out = Vec::with_capacity(n);
        tokio::time::timeout(support::WAIT, async {
            while out.len() < n {
                out.push(self.packets.recv().await.expect("viewer open"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {} of {n} video packets arrived", out.len()));
        out
    }

    pub fn node(&self) -> String {
        self.node.lock().unwrap().clone()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Connects, watches, and connects again until stopped.
async fn watch(
    entries: Vec<String>,
    silence: Duration,
    tx: mpsc::UnboundedSender<(Instant, Received)>,
    reconnects: Arc<AtomicUsize>,
    node: Arc<Mutex<String>>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::new();
    let mut first = true;
    while !stop.is_cancelled() {
        let (pc, mut events) = factory().build().await.unwrap();
        vitrine_sfu::peer::add_receivers(&pc).await.unwrap();
        let offer = local_offer(&pc, &mut events).await;
        let Some((answer, at)) = negotiate(&http, &entries, None, &offer).await else {
            let _ = pc.close().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            reconnects.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        *node.lock().unwrap() = at;
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        receive(&pc, events, silence, &tx, &stop).await;
        let _ = pc.close().await;
    }
}

/// Forwards video until the connection breaks or media stops.
async fn receive(
    pc: &Arc<dyn PeerConnection>,
    mut events: PeerEvents,
    silence: Duration,
    tx: &mpsc::UnboundedSender<(Instant, Received)>,
    stop: &CancellationToken,
) {
    let last = Arc::new(Mutex::new(Instant::now() + Duration::from_secs(2)));
    let session = CancellationToken::new();
    let (seen, tx2, ended) = (Arc::clone(&last), tx.clone(), session.clone());
    tokio::spawn(async move {
        loop {
            let track = tokio::select! {
                _ = ended.cancelled() => return,
                t = events.tracks.recv() => match t { Some(t) => t, None => return },
            };
            let (seen, tx, ended) = (Arc::clone(&seen), tx2.clone(), ended.clone());
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = ended.cancelled() => return,
                        e = track.poll() => e,
                    };
                    match event {
                        Some(TrackRemoteEvent::OnRtpPacket(p)) if p.header.payload_type != 111 => {
                            *seen.lock().unwrap() = Instant::now();
                            let r = Received {
                                video: true,
                                ssrc: p.header.ssrc,
                                seq: p.header.sequence_number,
                                payload_type: p.header.payload_type,
                            };
                            let _ = tx.send((Instant::now(), r));
                        }
                        Some(_) => {}
                        None => return,
                    }
                }
            });
        }
    });
    let mut state = events.state.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let quiet = Instant::now().saturating_duration_since(*last.lock().unwrap()) > silence;
        if quiet || broken(*state.borrow_and_update()) {
            break;
        }
    }
    session.cancel();
    let _ = pc;
}

/// A publisher sending synthetic VP8 + Opus that publishes again when its node goes away.
pub struct Publisher {
    /// Times it had to publish again.
    pub republished: Arc<AtomicUsize>,
    /// The base URL of the node it publishes to now.
    pub node: Arc<Mutex<String>>,
    stop: CancellationToken,
}

impl Publisher {
    pub async fn start(entries: Vec<String>, key: &str) -> Self {
        let republished = Arc::new(AtomicUsize::new(0));
        let node = Arc::new(Mutex::new(String::new()));
        let stop = CancellationToken::new();
        let (connected_tx, mut connected) = mpsc::channel(1);
        tokio::spawn(publish(
            entries,
            key.to_owned(),
            Arc::clone(&republished),
            Arc::clone(&node),
            stop.clone(),
            connected_tx,
        ));
        connected.recv().await.expect("published");
        Self {
            republished,
            node,
            stop,
        }
    }

    pub fn node(&self) -> String {
        self.node.lock().unwrap().clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn publish(
    entries: Vec<String>,
    key: String,
    republished: Arc<AtomicUsize>,
    node: Arc<Mutex<String>>,
    stop: CancellationToken,
    connected: mpsc::Sender<()>,
) {
    let http = reqwest::Client::new();
    let mut first = true;
    let (video_ssrc, audio_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
    let mut clock = Media {
        video_ssrc,
        audio_ssrc,
        ..Media::default()
    };
    while !stop.is_cancelled() {
        let video = support::track(RtpCodecKind::Video, "video/VP8", video_ssrc);
        let audio = support::track(RtpCodecKind::Audio, "audio/opus", audio_ssrc);
        let (pc, mut events) = factory().build().await.unwrap();
        for t in [&video, &audio] {
            pc.add_track(Arc::clone(t) as Arc<dyn TrackLocal>)
                .await
                .unwrap();
        }
        let offer = local_offer(&pc, &mut events).await;
        let Some((answer, at)) = negotiate(&http, &entries, Some(&key), &offer).await else {
            let _ = pc.close().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            republished.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        *node.lock().unwrap() = at;
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        let _ = connected.try_send(());
        let mut state = events.state.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if broken(*state.borrow_and_update()) {
                break;
            }
            // A write on a connection the server closed may never complete.
            if tokio::time::timeout(Duration::from_millis(100), clock.send(&video, &audio))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), pc.close()).await;
    }
}

/// The synthetic source: one VP8 packet (a keyframe every tenth) and one Opus packet per tick.
#[derive(Default)]
struct Media {
    video_ssrc: u32,
    audio_ssrc: u32,
    n: u32,
    seq_v: u16,
    seq_a: u16,
    ts_v: u32,
    ts_a: u32,
}

impl Media {
    async fn send(&mut self, video: &TrackLocalStaticRTP, audio: &TrackLocalStaticRTP) {
        let key_frame = self.n % 10 == 0;
        let payload: &'static [u8] = if key_frame {
            &[0x10, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0]
        } else {
            &[0x10, 0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0]
        };
        let v = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: self.seq_v,
                timestamp: self.ts_v,
                ssrc: self.video_ssrc,
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        };
        let a = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: self.seq_a,
                timestamp: self.ts_a,
                ssrc: self.audio_ssrc,
                ..Default::default()
            },
            payload: Bytes::from_static(&[0xfc, 0xff, 0xfe]),
        };
        let _ = video.write_rtp(v).await;
        let _ = audio.write_rtp(a).await;
        self.n += 1;
        self.seq_v = self.seq_v.wrapping_add(1);
        self.seq_a = self.seq_a.wrapping_add(1);
        self.ts_v = self.ts_v.wrapping_add(1800);
        self.ts_a = self.ts_a.wrapping_add(960);
    }
}

/// The longest time between two consecutive packets.
pub fn longest_gap(packets: &[(Instant, Received)]) -> Duration {
    packets
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default()
}
