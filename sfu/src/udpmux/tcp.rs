//! ICE over TCP on the node's one TCP port, for clients whose network lets no UDP through
//! (RFC 6544 passive candidates, RFC 4571 framing: a 16-bit length before each packet).
//!
//! One listener per bind address accepts every connection; its first frame must be a
//! connectivity check that names a session by its server ufrag and verifies with that
//! session's password (the rule of a UDP path, see [`super::demux::Demux::authenticate`]).
//! Only then is the connection handed to the session: to the listener its peer connection
//! bound on the address the client reached ([`SessionTcp`]), with the first frame replayed,
//! so the session's own ICE agent answers it. A connection that says nothing in time, says
//! something else, or names a session that already holds [`STREAMS_PER_SESSION`] is closed
//! and counted; at most [`MAX_PENDING`] connections wait for their first frame at once.
//!
//! It must never hand a connection to a session its first frame does not authenticate for,
//! and never let a silent client hold a slot past [`FIRST_FRAME_TIMEOUT`].

use super::MuxCounters;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use webrtc::runtime::{AsyncTcpListener, AsyncTcpStream};

/// How long a new connection may take to send its first check.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections that may wait for their first frame at once; more are closed at once.
pub const MAX_PENDING: usize = 256;

/// Connections one session may hold at once (a client tries one per candidate pair, and an
/// ICE restart opens another).
pub const STREAMS_PER_SESSION: usize = 8;

/// The largest first frame read: a connectivity check is a few hundred bytes.
const MAX_FIRST_FRAME: usize = 1024;

/// A connection whose first frame authenticated, waiting for its session's listener.
pub(super) struct Accepted {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    /// The first frame, length prefix included, handed to the session's reader first.
    first: Bytes,
    peer: SocketAddr,
    local: SocketAddr,
    slot: Slot,
}

/// A place among a session's [`STREAMS_PER_SESSION`]; freed when the connection is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's TCP side: one queue per address its peer connection listens on (the label of
/// that path), and the connections it holds.
#[derive(Debug, Default)]
pub(super) struct SessionTcp {
    listeners: Mutex<HashMap<IpAddr, mpsc::Sender<Accepted>>>,
    live: Arc<AtomicUsize>,
}

impl SessionTcp {
    /// The listener of the peer connection's path labelled `label` (a later one for the same
    /// address, after an ICE restart rebinds, replaces it).
    pub(super) fn listener(self: &Arc<Self>, label: SocketAddr) -> Arc<dyn AsyncTcpListener> {
        let (tx, rx) = mpsc::channel(STREAMS_PER_SESSION);
        lock(&self.listeners).insert(label.ip(), tx);
        Arc::new(MuxedListener {
            label,
            queue: tokio::sync::Mutex::new(rx),
        })
    }

    /// Takes a slot for one more connection, unless the session holds its maximum.
    fn slot(&self) -> Option<Slot> {
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < STREAMS_PER_SESSION).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Slot(Arc::clone(&self.live)))
    }

    /// Hands `accepted` to the listener on the address the client reached (any listener when
    /// none is on exactly that one: a wildcard bind's path). `false` when none takes it.
    fn deliver(&self, accepted: Accepted) -> bool {
        let listeners = lock(&self.listeners);
        let queue = listeners
            .get(&accepted.local.ip())
            .or_else(|| listeners.values().find(|q| !q.is_closed()));
        queue.is_some_and(|q| q.try_send(accepted).is_ok())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds the TCP port on every address of `plan` (port 0: one free port, the same on each).
pub(super) fn bind(plan: &[IpAddr], port: u16) -> io::Result<Vec<TcpListener>> {
    let mut port = port;
    let mut listeners = Vec::new();
    for ip in plan {
        let std = std::net::TcpListener::bind(SocketAddr::new(*ip, port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the ICE TCP port {ip}:{port}: {e}"),
            )
        })?;
        std.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std)?;
        port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accepts connections on `listener` until `stop`, each checked on its own task.
pub(super) async fn accept(
    listener: TcpListener,
    mux: std::sync::Weak<super::UdpMux>,
    counters: MuxCounters,
    stop: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if super::transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {
                continue;
            }
            Err(e) => {
                // Out of descriptors, most likely: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting on the ICE TCP port failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            counters.queue_full.inc();
            continue;
        };
        let (mux, counters, stop) = (mux.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(FIRST_FRAME_TIMEOUT, first_frame(stream)) => r,
            };
            drop(permit);
            let Ok(Ok((stream, first))) = first else {
                counters.unroutable.inc();
                return;
            };
            let Some(mux) = mux.upgrade() else {
                return;
            };
            hand_over(&mux, stream, first, peer, &counters);
        });
    }
}

/// Reads one RFC 4571 frame; its bytes with their length prefix.
async fn first_frame(mut stream: TcpStream) -> io::Result<(TcpStream, Bytes)> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let n = usize::from(u16::from_be_bytes(len));
    if n > MAX_FIRST_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first frame too long",
        ));
    }
    let mut frame = BytesMut::with_capacity(2 + n);
    frame.extend_from_slice(&len);
    frame.resize(2 + n, 0);
    stream.read_exact(&mut frame[2..]).await?;
    Ok((stream, frame.freeze()))
}

/// Gives a connection whose first frame is `first` to the session it authenticates for.
fn hand_over(
    mux: &super::UdpMux,
    stream: TcpStream,
    first: Bytes,
    peer: SocketAddr,
    counters: &MuxCounters,
) {
    let session = match mux.tcp_session_for(&first[2..]) {
        Ok(session) => session,
        Err(super::demux::Refused::BadIntegrity) => {
            counters.refused.inc();
            tracing::debug!(%peer, "ice check over tcp with a bad integrity refused");
            return;
        }
        Err(_) => {
            counters.unroutable.inc();
            return;
        }
    };
    let Some(slot) = session.slot() else {
        counters.queue_full.inc();
        return;
    };
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let accepted = Accepted {
        read,
        write,
        first,
        peer,
        local,
        slot,
    };
    if session.deliver(accepted) {
        counters.tcp_accepted.inc();
    } else {
        counters.queue_full.inc();
    }
}

/// A session's listener on one path: it accepts what the shared listener handed over.
#[derive(Debug)]
struct MuxedListener {
    label: SocketAddr,
    queue: tokio::sync::Mutex<mpsc::Receiver<Accepted>>,
}

impl AsyncTcpListener for MuxedListener {
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>>
    {
        Box::pin(async move {
            let Some(accepted) = self.queue.lock().await.recv().await else {
                // The session left the mux: nothing will arrive again.
                return std::future::pending().await;
            };
            let peer = accepted.peer;
            let stream = MuxedStream {
                label: self.label,
                peer,
                first: Mutex::new(accepted.first),
                read: tokio::sync::Mutex::new(accepted.read),
                write: tokio::sync::Mutex::new(accepted.write),
                _slot: accepted.slot,
            };
            Ok((Arc::new(stream) as Arc<dyn AsyncTcpStream>, peer))
        })
    }

    /// The label, as for a UDP path: the connection's candidate carries it.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.label)
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .finish()
    }
}

/// An accepted connection as its session sees it: the first frame, then the socket.
struct MuxedStream {
    label: SocketAddr,
    peer: SocketAddr,
    first: Mutex<Bytes>,
    read: tokio::sync::Mutex<OwnedReadHalf>,
    /// One writer at a time, so frames are never interleaved.
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    _slot: Slot,
}

impl std::fmt::Debug for MuxedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxedStream")
            .field("label", &self.label)
            .field("peer", &self.peer)
            .finish()
    }
}

impl AsyncTcpStream for MuxedStream {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            {
                let mut first = lock(&self.first);
                if !first.is_empty() {
                    let n = first.len().min(buf.len());
                    buf[..n].copy_from_slice(&first[..n]);
                    first.advance(n);
                    return Ok(n);
                }
            }
            self.read.lock().await.read(buf).await
        })
    }

    fn write_all<'a, 'b>(
        &'a self,
        buf: &'b [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move { self.write.lock().await.write_all(buf).await })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.label)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MuxCounters, UdpMux, stun};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PWD: &str = "passwordApasswordA";

    fn framed(m: &[u8]) -> Vec<u8> {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(m);
        f
    }

    async fn closed(mut conn: tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(conn.read(&mut buf).await, Ok(0) | Err(_))
    }

    fn mux() -> (Arc<UdpMux>, MuxCounters, SocketAddr) {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let counters = MuxCounters::default();
        let mux = UdpMux::bind(&[lo], 0, Some(0), counters.clone()).unwrap();
        let port = mux.tcp_port().unwrap();
        (mux, counters, SocketAddr::new(lo, port))
    }

    fn session_listener(
        registration: &Arc<super::super::Registration>,
    ) -> Arc<dyn AsyncTcpListener> {
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let label = own.local_addr().unwrap();
        let listener = registration.runtime().wrap_tcp_listener(own).unwrap();
        assert_eq!(
            listener.local_addr().unwrap(),
            label,
            "the path keeps its label"
        );
        listener
    }

    #[tokio::test]
    async fn an_authenticated_connection_reaches_its_session_first_frame_included() {
        let (mux, counters, shared) = mux();
        let a = mux.register();
        a.add_credentials("ufragA", PWD).unwrap();
        let listener = session_listener(&a);

        let mut client = tokio::net::TcpStream::connect(shared).await.unwrap();
        let check = framed(&stun::signed_binding_request("ufragA:c", PWD, [1; 12]));
        client.write_all(&check).await.unwrap();
        client.write_all(b"\x00\x03abc").await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(stream.peer_addr().unwrap(), peer);
        assert_eq!(stream.local_addr().unwrap(), listener.local_addr().unwrap());
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        while got.len() < check.len() + 5 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..check.len()], &check[..], "the check, replayed");
        assert_eq!(&got[check.len()..], b"\x00\x03abc", "then the socket");
        stream.write_all(b"\x00\x02ok").await.unwrap();
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\x00\x02ok");
        assert_eq!(counters.tcp_accepted.get(), 1);
    }

    #[tokio::test]
    async fn a_session_holds_a_bounded_number_of_connections() {
        let (mux, counters, shared) = mux();
        let a = mux.register();
        a.add_credentials("ufragA", PWD).unwrap();
        let listener = session_listener(&a);
        let mut held = Vec::new();
        for i in 0..STREAMS_PER_SESSION {
            let mut client = tokio::net::TcpStream::connect(shared).await.unwrap();
            let check = stun::signed_binding_request("ufragA:c", PWD, [i as u8; 12]);
            client.write_all(&framed(&check)).await.unwrap();
            held.push((client, listener.accept().await.unwrap().0));
        }
        let mut extra = tokio::net::TcpStream::connect(shared).await.unwrap();
        let check = stun::signed_binding_request("ufragA:c", PWD, [99; 12]);
        extra.write_all(&framed(&check)).await.unwrap();
        assert!(closed(extra).await, "one too many");
        assert_eq!(counters.queue_full.get(), 1);
        // A connection the session drops frees its place.
        drop(held.pop());
        let mut again = tokio::net::TcpStream::connect(shared).await.unwrap();
        again.write_all(&framed(&check)).await.unwrap();
        let (_stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, again.local_addr().unwrap());
        // An ended session takes no connection.
        a.end();
        let mut late = tokio::net::TcpStream::connect(shared).await.unwrap();
        late.write_all(&framed(&check)).await.unwrap();
        assert!(closed(late).await);
        assert_eq!(counters.unroutable.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_deadline() {
        let (mux, counters, shared) = mux();
        let _a = mux.register();
        let started = tokio::time::Instant::now();
        let silent = tokio::net::TcpStream::connect(shared).await.unwrap();
        assert!(closed(silent).await);
        assert!(tokio::time::Instant::now() - started >= FIRST_FRAME_TIMEOUT);
        assert_eq!(counters.unroutable.get(), 1);
    }
}
