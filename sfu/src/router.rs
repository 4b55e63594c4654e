//! The per-stream router: fans the current publisher's RTP out to every subscriber leg.
//!
//! **Hot path contract:** [`PublisherLink::forward`] takes a snapshot of the leg list (one
//! short read lock and an `Arc` clone, released before the loop; for video under the group of
//! pictures' lock, one per packet, not per leg), then `try_send`s a clone of the packet to each
//! leg's bounded queue. A packet clone shares its payload buffer and, since ingest
//! strips header extensions, allocates nothing. A full queue drops the packet for that leg only
//! and counts it: a slow subscriber never slows the publisher or the other subscribers.

use crate::codec::{Codec, MediaKind};
use crate::gop::Gop;
use crate::keyframe::KeyframeRequests;
use crate::metrics::SfuMetrics;
use rtc::rtp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, mpsc, watch};
use vitrine_core::StreamId;

/// Packets a leg may have queued before new ones are dropped for it: about 1.5 s of a
/// 1.5 Mbit/s stream with audio. Overflow policy: drop newest and count
/// (`vitrine_rtp_packets_dropped`); the receiver's NACK/PLI then repairs the picture.
pub const LEG_QUEUE_CAPACITY: usize = 256;

/// One packet on its way to one leg.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub kind: MediaKind,
    pub keyframe: bool,
    pub packet: rtp::Packet,
}

/// A codec the current publisher sends, with the payload type it uses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCodec {
    pub codec: Codec,
    pub payload_type: u8,
}

/// What subscribers need to know about the current source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// Increases with every publisher attached; 0 before the first.
    pub generation: u64,
    pub live: bool,
    pub codecs: Vec<SourceCodec>,
    /// When the current publisher attached (its codecs become known with its first packets).
    pub attached_at: Option<tokio::time::Instant>,
    /// The picture size the publisher says its camera captures (the studio page says it): a
    /// browser starts small while its bandwidth estimate ramps up, so the first keyframe is no
    /// guide to the ladder. `None` when it said nothing.
    pub capture: Option<(u32, u32)>,
}

type LegId = u64;

#[derive(Debug, Clone)]
struct LegSlot {
    id: LegId,
    tx: mpsc::Sender<Forwarded>,
    /// A server-side consumer (the transcoder), not a viewer.
    tap: bool,
}

/// One stream's router.
#[derive(Debug)]
pub struct Router {
    stream: StreamId,
    /// Copy-on-write list of legs: writers (join/leave) replace it, the hot path clones the `Arc`.
    legs: RwLock<Arc<[LegSlot]>>,
    next_leg: AtomicU64,
    /// The generation allowed to forward; packets of a replaced publisher are dropped.
    current_generation: AtomicU64,
    source: watch::Sender<SourceInfo>,
    keyframe_wanted: Notify,
    /// The video since the last keyframe, replayed to a joining viewer. Held while the leg
    /// list is read (forwarding) or changed (joining), so a joining viewer gets each packet
    /// once: from the replay or live, never both, never neither.
    gop: Mutex<Gop>,
    metrics: Arc<SfuMetrics>,
}

impl Router {
    pub fn new(stream: StreamId, metrics: Arc<SfuMetrics>) -> Arc<Self> {
        Arc::new(Self {
            stream,
            legs: RwLock::new(Arc::from(Vec::new())),
            next_leg: AtomicU64::new(1),
            current_generation: AtomicU64::new(0),
            source: watch::Sender::new(SourceInfo::default()),
            keyframe_wanted: Notify::new(),
            gop: Mutex::default(),
            metrics,
        })
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    pub fn metrics(&self) -> &Arc<SfuMetrics> {
        &self.metrics
    }

    /// Number of subscriber legs attached (taps are not viewers).
    pub fn viewers(&self) -> usize {
        self.legs
            .read()
            .expect("legs lock")
            .iter()
            .filter(|l| !l.tap)
            .count()
    }

    /// Number of legs of every kind, viewers and taps (a relay with none is idle).
    pub fn consumers(&self) -> usize {
        self.legs.read().expect("legs lock").len()
    }

    pub fn is_live(&self) -> bool {
        self.source.borrow().live
    }

    /// Waits until the source's video codec is known (its first video packet came), at most
    /// until `limit` after the current publisher attached: a publisher's (or a relay's) audio
    /// usually arrives before its video, and a leg or a role plans from the codecs it sees. An
    /// audio-only stream therefore delays only the requests of its first `limit`. With
    /// `unless_idle`, returns at once when no publisher is attached.
    pub async fn video_known(&self, limit: std::time::Duration, unless_idle: bool) {
        let mut source = self.source();
        // A detached publisher's attachment time is stale: the wait starts now.
        let attached = {
            let s = source.borrow();
            s.attached_at.filter(|_| s.live)
        };
        let deadline = attached.unwrap_or_else(tokio::time::Instant::now) + limit;
        let _ = tokio::time::timeout_at(
            deadline,
            source.wait_for(|s| {
                (unless_idle && !s.live)
                    || (s.live && s.codecs.iter().any(|c| c.codec.kind() == MediaKind::Video))
            }),
        )
        .await;
    }

    /// Watches the current source (publisher changes, codecs).
    pub fn source(&self) -> watch::Receiver<SourceInfo> {
        self.source.subscribe()
    }

    /// Attaches a subscriber leg; the returned handle receives packets and detaches on drop.
    pub fn join(self: &Arc<Self>) -> LegHandle {
        self.attach_leg(false)
    }

    /// Attaches a tap: a leg for a server-side consumer (the HLS transcoder) that receives the
    /// publisher's packets untouched and is not counted as a viewer.
    pub fn join_tap(self: &Arc<Self>) -> LegHandle {
        self.attach_leg(true)
    }

    fn attach_leg(self: &Arc<Self>, tap: bool) -> LegHandle {
        let id = self.next_leg.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(LEG_QUEUE_CAPACITY);
        let replayed = {
            let gop = self.gop.lock().expect("gop lock");
            // A viewer starts from the current pictures when they are fresh; a tap (the
            // transcoder) takes the stream as it comes.
            let replay = (!tap)
                .then(|| gop.replay(std::time::Instant::now()))
                .flatten();
            for item in replay.into_iter().flatten() {
                // The queue is empty and holds more than a replay (see `gop::MAX_GOP_PACKETS`).
                let _ = tx.try_send(item.clone());
            }
            let mut legs = self.legs.write().expect("legs lock");
            let mut next: Vec<LegSlot> = legs.iter().cloned().collect();
            next.push(LegSlot { id, tx, tap });
            *legs = Arc::from(next);
            replay.is_some()
        };
        if !tap {
            self.metrics.subscribers.inc();
        }
        if replayed {
            self.metrics.gop_replays.inc();
        } else {
            // A new viewer needs a keyframe to start decoding.
            self.request_keyframe();
        }
        LegHandle {
            router: Arc::clone(self),
            id,
            rx,
        }
    }

    fn leave(&self, id: LegId) {
        let mut legs = self.legs.write().expect("legs lock");
        if let Some(leaving) = legs.iter().find(|l| l.id == id) {
            let viewer = !leaving.tap;
            let next: Vec<LegSlot> = legs.iter().filter(|l| l.id != id).cloned().collect();
            *legs = Arc::from(next);
            if viewer {
                self.metrics.subscribers.dec();
            }
        }
    }

    /// A subscriber lost its picture (PLI/FIR) or just joined: ask the publisher, coalesced.
    pub fn request_keyframe(&self) {
        self.metrics.keyframe_requests.inc();
        self.keyframe_wanted.notify_one();
    }

    /// Attaches a publisher, replacing any previous one (its packets stop being forwarded at once).
    pub fn attach_publisher(self: &Arc<Self>) -> PublisherLink {
        let mut generation = 0;
        self.source.send_modify(|s| {
            s.generation += 1;
            s.live = true;
            s.codecs.clear();
            s.capture = None;
            s.attached_at = Some(tokio::time::Instant::now());
            generation = s.generation;
        });
        self.current_generation.store(generation, Ordering::Release);
        self.gop.lock().expect("gop lock").clear();
        self.metrics.publishers.inc();
        PublisherLink {
            router: Arc::clone(self),
            generation,
            keyframes: Mutex::new(KeyframeRequests::default()),
        }
    }
}

/// A subscriber leg's end of the router.
#[derive(Debug)]
pub struct LegHandle {
    router: Arc<Router>,
    id: LegId,
    rx: mpsc::Receiver<Forwarded>,
}

impl LegHandle {
    pub async fn recv(&mut self) -> Option<Forwarded> {
        self.rx.recv().await
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }
}

impl Drop for LegHandle {
    fn drop(&mut self) {
        self.router.leave(self.id);
    }
}

/// A publisher's end of the router. Dropping it ends the broadcast unless a newer publisher
/// already replaced this one.
#[derive(Debug)]
pub struct PublisherLink {
    router: Arc<Router>,
    generation: u64,
    keyframes: Mutex<KeyframeRequests>,
}

impl PublisherLink {
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Whether a newer publisher took over this stream.
    pub fn is_replaced(&self) -> bool {
        self.router.current_generation.load(Ordering::Acquire) != self.generation
    }

    /// Announces a codec this publisher sends (one call per negotiated track).
    pub fn add_codec(&self, codec: SourceCodec) {
        let generation = self.generation;
        self.router.source.send_if_modified(|s| {
            if s.generation != generation || s.codecs.contains(&codec) {
                return false;
            }
            s.codecs.push(codec);
            true
        });
    }

    /// Records the picture size this publisher says it captures (see [`SourceInfo::capture`]).
    pub fn declare_capture(&self, width: u32, height: u32) {
        let generation = self.generation;
        self.router.source.send_if_modified(|s| {
            let changed = s.generation == generation && s.capture != Some((width, height));
            if changed {
                s.capture = Some((width, height));
            }
            changed
        });
    }

    /// Fans one packet out to every leg (see the module's hot-path contract).
    pub fn forward(&self, kind: MediaKind, codec: Codec, packet: &rtp::Packet) {
        if self.is_replaced() {
            return;
        }
        let metrics = &self.router.metrics;
        metrics.rtp_packets_in.inc();
        metrics.rtp_bytes_in.inc_by(packet.payload.len() as u64);
        let keyframe = kind == MediaKind::Video && codec.is_keyframe(&packet.payload);
        if keyframe {
            self.keyframes
                .lock()
                .expect("keyframe lock")
                .keyframe_seen();
        }
        let item = Forwarded {
            kind,
            keyframe,
            packet: packet.clone(),
        };
        // Video enters the group of pictures, and the leg list is read under its lock (see
        // `Router::gop`); audio needs neither.
        let gop = (kind == MediaKind::Video).then(|| {
            let mut gop = self.router.gop.lock().expect("gop lock");
            gop.push(&item, std::time::Instant::now);
            gop
        });
        let legs = Arc::clone(&self.router.legs.read().expect("legs lock"));
        drop(gop);
        for leg in legs.iter() {
            if let Err(mpsc::error::TrySendError::Full(_)) = leg.tx.try_send(item.clone()) {
                metrics.rtp_packets_dropped.inc();
            }
        }
    }

    /// Waits until a subscriber wants a keyframe and the coalescing window allows asking now.
    pub async fn keyframe_needed(&self) {
        loop {
            let deadline = {
                let mut k = self.keyframes.lock().expect("keyframe lock");
                if k.poll(tokio::time::Instant::now().into_std()) {
                    break;
                }
                k.deadline()
            };
            let notified = self.router.keyframe_wanted.notified();
            match deadline {
                Some(due) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => continue,
                    }
                }
                None => notified.await,
            }
            if self
                .keyframes
                .lock()
                .expect("keyframe lock")
                .request(tokio::time::Instant::now().into_std())
            {
                break;
            }
        }
        self.router.metrics.keyframe_requests_sent.inc();
    }
}

impl Drop for PublisherLink {
    fn drop(&mut self) {
        self.router.metrics.publishers.dec();
        let generation = self.generation;
        self.router.source.send_if_modified(|s| {
            if s.generation == generation && s.live {
                s.live = false;
                true
            } else {
                false
            }
        });
    }
}

/// Every router of this process, created on first use. A router nobody holds any more (no
/// publisher link, no leg, no session task) is idle and is dropped at the next creation, so the
/// map holds the streams in use, not every stream ever watched.
#[derive(Debug, Default)]
pub struct Routers {
    routers: Mutex<HashMap<StreamId, Arc<Router>>>,
    metrics: Arc<SfuMetrics>,
}

impl Routers {
    pub fn new(metrics: Arc<SfuMetrics>) -> Self {
        Self {
            routers: Mutex::default(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<SfuMetrics> {
        &self.metrics
    }

    /// The stream's router, created if needed.
    pub fn get_or_create(&self, stream: &StreamId) -> Arc<Router> {
        let mut routers = self.routers.lock().expect("routers lock");
        if !routers.contains_key(stream) {
            routers.retain(|_, router| Arc::strong_count(router) > 1);
        }
        routers
            .entry(stream.clone())
            .or_insert_with(|| Router::new(stream.clone(), Arc::clone(&self.metrics)))
            .clone()
    }

    pub fn get(&self, stream: &StreamId) -> Option<Arc<Router>> {
        self.routers
            .lock()
            .expect("routers lock")
            .get(stream)
            .cloned()
    }

    /// Number of routers held (in use, or idle until the next creation).
    pub fn len(&self) -> usize {
        self.routers.lock().expect("routers lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Current viewer count of a stream (0 when it has no router).
    pub fn viewers(&self, stream: &StreamId) -> usize {
        self.get(stream).map_or(0, |r| r.viewers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(seq: u16, payload: &'static [u8]) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                sequence_number: seq,
                payload_type: 96,
                ssrc: 1,
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    fn router() -> Arc<Router> {
        Router::new(StreamId::parse("s1").unwrap(), Arc::default())
    }

    #[tokio::test]
    async fn every_leg_gets_every_packet() {
        let r = router();
        let mut a = r.join();
        let mut b = r.join();
        let publisher = r.attach_publisher();
        for seq in 0..10 {
            publisher.forward(MediaKind::Video, Codec::Vp8, &packet(seq, &[0x10, 0x01]));
        }
        for leg in [&mut a, &mut b] {
            for seq in 0..10 {
                assert_eq!(leg.recv().await.unwrap().packet.header.sequence_number, seq);
            }
        }
        assert_eq!(r.viewers(), 2);
        let mut tap = r.join_tap();
        publisher.forward(MediaKind::Video, Codec::Vp8, &packet(10, &[0x10, 0x01]));
        assert_eq!(tap.recv().await.unwrap().packet.header.sequence_number, 10);
        assert_eq!(r.viewers(), 2, "a tap is not a viewer");
        drop(tap);
        assert_eq!(r.metrics().subscribers.get(), 2);
        drop(a);
        assert_eq!(r.viewers(), 1);
    }

    #[tokio::test]
    async fn a_full_leg_drops_only_its_own_packets() {
        let r = router();
        let mut slow = r.join();
        let mut fast = r.join();
        let publisher = r.attach_publisher();
        let total = LEG_QUEUE_CAPACITY + 50;
        let mut fast_got = 0;
        for seq in 0..total {
            publisher.forward(MediaKind::Audio, Codec::Opus, &packet(seq as u16, &[1]));
            // The fast leg drains as it goes; the slow one never reads.
            while fast.rx.try_recv().is_ok() {
                fast_got += 1;
            }
        }
        assert_eq!(fast_got, total);
        let mut slow_got = 0;
        while slow.rx.try_recv().is_ok() {
            slow_got += 1;
        }
        assert_eq!(slow_got, LEG_QUEUE_CAPACITY);
        assert_eq!(r.metrics().rtp_packets_dropped.get(), 50);
    }

    #[tokio::test]
    async fn a_replaced_publisher_no_longer_forwards() {
        let r = router();
        let mut leg = r.join();
        let first = r.attach_publisher();
        let second = r.attach_publisher();
        first.forward(MediaKind::Audio, Codec::Opus, &packet(1, &[1]));
        second.forward(MediaKind::Audio, Codec::Opus, &packet(2, &[1]));
        assert_eq!(leg.recv().await.unwrap().packet.header.sequence_number, 2);
        drop(first);
        assert!(
            r.is_live(),
            "dropping the replaced publisher keeps the stream live"
        );
        drop(second);
        assert!(!r.is_live());
    }

    #[test]
    fn idle_routers_are_dropped() {
        let routers = Routers::new(Arc::default());
        let a = StreamId::parse("a").unwrap();
        let held = routers.get_or_create(&a).join();
        let b = StreamId::parse("b").unwrap();
        drop(routers.get_or_create(&b));
        routers.get_or_create(&StreamId::parse("c").unwrap());
        assert_eq!(routers.len(), 2, "b was idle, a has a leg, c is new");
        assert!(routers.get(&b).is_none());
        drop(held);
    }

    /// A viewer who joins after a keyframe gets it and the frames since, then the live
    /// packets, each once and in order, and no keyframe is asked of the publisher for it.
    #[tokio::test]
    async fn a_joining_viewer_starts_from_the_current_pictures() {
        const KEY: &[u8] = &[0x10, 0x00];
        const DELTA: &[u8] = &[0x10, 0x01];
        let r = router();
        let publisher = r.attach_publisher();
        let mut early = r.join();
        assert_eq!(
            r.metrics().keyframe_requests.get(),
            1,
            "nothing to replay yet"
        );
        publisher.forward(MediaKind::Video, Codec::Vp8, &packet(1, DELTA));
        let mut key = packet(2, KEY);
        key.header.timestamp = 3000;
        publisher.forward(MediaKind::Video, Codec::Vp8, &key);
        publisher.forward(MediaKind::Audio, Codec::Opus, &packet(3, &[1]));
        publisher.forward(MediaKind::Video, Codec::Vp8, &packet(4, DELTA));
        let mut late = r.join();
        publisher.forward(MediaKind::Video, Codec::Vp8, &packet(5, DELTA));
        let mut got = vec![];
        while let Ok(item) = late.rx.try_recv() {
            got.push((item.packet.header.sequence_number, item.keyframe));
        }
        assert_eq!(got, [(2, true), (4, false), (5, false)]);
        assert_eq!(
            r.metrics().keyframe_requests.get(),
            1,
            "the late viewer asked nothing"
        );
        assert_eq!(r.metrics().gop_replays.get(), 1);
        let mut early_got = vec![];
        while let Ok(item) = early.rx.try_recv() {
            early_got.push(item.packet.header.sequence_number);
        }
        assert_eq!(
            early_got,
            [1, 2, 3, 4, 5],
            "nothing replayed to a viewer already there"
        );
        // A tap takes the stream as it comes; a new publisher's viewers wait for its keyframe.
        let mut tap = r.join_tap();
        assert!(tap.rx.try_recv().is_err());
        let _next = r.attach_publisher();
        let mut after = r.join();
        assert!(after.rx.try_recv().is_err());
        assert_eq!(r.metrics().keyframe_requests.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn keyframe_requests_are_coalesced() {
        let r = router();
        let publisher = r.attach_publisher();
        r.request_keyframe();
        publisher.keyframe_needed().await;
        let asked_at = tokio::time::Instant::now();
        r.request_keyframe();
        r.request_keyframe();
        publisher.keyframe_needed().await;
        assert!(tokio::time::Instant::now() - asked_at >= crate::keyframe::MIN_INTERVAL);
        assert_eq!(r.metrics().keyframe_requests_sent.get(), 2);
    }
}
