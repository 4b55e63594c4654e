//! One UDP socket per bind address for every server-side WebRTC session of a node.
//!
//! The `webrtc` crate binds a socket per peer connection; its one door is a per-connection
//! [`Runtime`] whose `wrap_udp_socket` may return any [`AsyncUdpSocket`]. [`UdpMux`] owns one
//! tokio socket per bind address on the configured port and one reader task per socket, which
//! hands each datagram to its session's bounded queue through the socket's [`Demux`] table
//! (STUN USERNAME and integrity first, then the remote address). A session's [`MuxRuntime`]
//! delegates everything to [`TokioRuntime`] except `wrap_udp_socket`: it drops the ephemeral
//! socket the connection bound (whose address only labels the connection's candidate, so the
//! answer's candidate port is rewritten to the shared one, see [`crate::candidates`]) and
//! returns a [`MuxedSocket`] that reads the session's queue and sends through the shared socket.
//!
//! Only answerers facing full-ICE clients may use it (they are ICE-lite: they never send a
//! check, so the client only ever sees the shared port); connections this node opens itself
//! (relay legs) keep their own sockets. It must never deliver a datagram to a session other
//! than the one its table names, and never block the reader on a slow session (full queues
//! drop, counted).

pub mod demux;
pub mod stun;
pub mod tcp;

use bytes::{Bytes, BytesMut};
use demux::{Demux, Refused, SessionKey, UfragTaken};
use prometheus_client::metrics::counter::Counter;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Datagrams one session may have waiting: about a second of a 720p publisher's packets.
/// Overflow policy: the newest datagram is dropped and counted, as a full socket buffer would.
pub const SESSION_QUEUE: usize = 512;

/// The largest datagram read: one Ethernet MTU with room to spare (ICE, DTLS and SRTP stay
/// under 1500 bytes; a larger one is truncated, and then fails its integrity checks).
const MAX_DATAGRAM: usize = 2048;

/// How much the reader allocates at once: datagrams are read into it one after the other and
/// handed out as slices of it, so a packet costs neither an allocation nor a copy.
const RECEIVE_BLOCK: usize = 64 * 1024;

/// A datagram and who sent it.
type Datagram = (Bytes, SocketAddr);

/// What the mux counts (registered as metrics by [`crate::metrics::SfuMetrics`]).
#[derive(Debug, Default, Clone)]
pub struct MuxCounters {
    /// Datagrams from an address no session learned that were not a signed check of a
    /// session (scans, media of ended sessions, unknown ufrags).
    pub unroutable: Counter,
    /// Checks whose MESSAGE-INTEGRITY did not verify with the named session's password.
    pub refused: Counter,
    /// Datagrams dropped because their session's queue was full, and TCP connections closed
    /// because too many waited for their first frame or their session held its maximum.
    pub queue_full: Counter,
    /// TCP connections handed to the session their first check authenticated for.
    pub tcp_accepted: Counter,
}

/// One shared socket and its table.
struct Shared {
    local: SocketAddr,
    io: Arc<UdpSocket>,
    table: Arc<Mutex<Demux<mpsc::Sender<Datagram>>>>,
}

/// The node's shared ICE sockets (one per bind address, all on one port) and, when ICE over
/// TCP is on, its TCP listeners (one per bind address, on one TCP port).
pub struct UdpMux {
    port: u16,
    sockets: Vec<Shared>,
    /// The shared TCP port, and each session's TCP side (see [`tcp`]).
    tcp_port: Option<u16>,
    tcp_sessions: Mutex<std::collections::HashMap<SessionKey, Arc<tcp::SessionTcp>>>,
    next_key: AtomicU64,
    /// Stops the reader tasks when the mux is dropped.
    stop: CancellationToken,
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux")
            .field("local", &self.local_addrs())
            .finish()
    }
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The addresses to bind: each given one, except concrete addresses of a family whose
/// wildcard is also given (the wildcard socket receives for them: binding both on one port
/// would fail).
fn bind_plan(ips: &[IpAddr]) -> Vec<IpAddr> {
    let wildcard = |v4: bool| {
        ips.iter()
            .any(|ip| ip.is_unspecified() && ip.is_ipv4() == v4)
    };
    let mut plan: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if (ip.is_unspecified() || !wildcard(ip.is_ipv4())) && !plan.contains(ip) {
            plan.push(*ip);
        }
    }
    plan
}

impl UdpMux {
    /// Binds UDP `port` on every address of `bind_ips` (port 0: one free port, the same on
    /// each), and TCP `tcp_port` likewise when given, and starts reading. Must run inside a
    /// tokio runtime.
    pub fn bind(
        bind_ips: &[IpAddr],
        port: u16,
        tcp_port: Option<u16>,
        counters: MuxCounters,
    ) -> io::Result<Arc<Self>> {
        let mut port = port;
        let mut sockets = Vec::new();
        let stop = CancellationToken::new();
        let plan = bind_plan(bind_ips);
        for ip in plan.iter().copied() {
            let std = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).map_err(|e| {
                io::Error::new(e.kind(), format!("binding the ICE port {ip}:{port}: {e}"))
            })?;
            std.set_nonblocking(true)?;
            let io = Arc::new(UdpSocket::from_std(std)?);
            let local = io.local_addr()?;
            port = local.port();
            let table = Arc::new(Mutex::new(Demux::default()));
            tokio::spawn(read(
                Arc::clone(&io),
                Arc::clone(&table),
                counters.clone(),
                stop.clone(),
            ));
            sockets.push(Shared { local, io, table });
        }
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no ICE bind address",
            ));
        }
        let listeners = match tcp_port {
            Some(tcp_port) => Some(tcp::bind(&plan, tcp_port)?),
            None => None,
        };
        let tcp_port = match &listeners {
            Some(l) => Some(l[0].local_addr()?.port()),
            None => None,
        };
        let mux = Arc::new(Self {
            port,
            sockets,
            tcp_port,
            tcp_sessions: Mutex::default(),
            next_key: AtomicU64::new(1),
            stop: stop.clone(),
        });
        for listener in listeners.into_iter().flatten() {
            tokio::spawn(tcp::accept(
                listener,
                Arc::downgrade(&mux),
                counters.clone(),
                stop.clone(),
            ));
        }
        Ok(mux)
    }

    /// The shared TCP port every answer's passive TCP candidates carry (`None`: no ICE over
    /// TCP).
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp_port
    }

    /// The TCP side of the session a connection's first frame (`check`) authenticates for.
    fn tcp_session_for(&self, check: &[u8]) -> Result<Arc<tcp::SessionTcp>, Refused> {
        let key = lock(&self.sockets[0].table).authenticate(check)?;
        lock(&self.tcp_sessions)
            .get(&key)
            .cloned()
            .ok_or(Refused::UnknownUfrag)
    }

    /// The shared port every answer advertises.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.local).collect()
    }

    /// Sessions registered (those of the first socket: every session is in every table).
    pub fn sessions(&self) -> usize {
        self.sockets[0]
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Enters a new session in every table; its credentials come later
    /// ([`Registration::add_credentials`]), and it leaves when the registration ends.
    pub fn register(self: &Arc<Self>) -> Arc<Registration> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let queues = self
            .sockets
            .iter()
            .map(|shared| {
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                lock(&shared.table).insert(key, tx);
                Arc::new(Mutex::new(rx))
            })
            .collect();
        let tcp = Arc::new(tcp::SessionTcp::default());
        if self.tcp_port.is_some() {
            lock(&self.tcp_sessions).insert(key, Arc::clone(&tcp));
        }
        Arc::new(Registration {
            mux: Arc::clone(self),
            key,
            queues,
            tcp,
            ended: AtomicBool::new(false),
        })
    }

    /// The shared socket a connection's socket labelled `label` sends and receives through:
    /// the one bound to its address, else the wildcard of its family.
    fn socket_for(&self, label: SocketAddr) -> Option<usize> {
        let exact = self.sockets.iter().position(|s| s.local.ip() == label.ip());
        exact.or_else(|| {
            self.sockets
                .iter()
                .position(|s| s.local.ip().is_unspecified() && s.local.is_ipv4() == label.is_ipv4())
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reader of one shared socket: routes each datagram to its session's queue. The table
/// lock is held only for the lookup and the `try_send`, never across an await.
async fn read(
    io: Arc<UdpSocket>,
    table: Arc<Mutex<Demux<mpsc::Sender<Datagram>>>>,
    counters: MuxCounters,
    stop: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(RECEIVE_BLOCK);
    loop {
        if buf.capacity() < MAX_DATAGRAM {
            buf.reserve(RECEIVE_BLOCK);
        }
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = io.recv_buf_from(&mut buf) => r,
        };
        let (_, from) = match received {
            Ok(r) => r,
            // An ICMP error from one peer, or a signal: the socket is fine.
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "the shared ICE socket failed; its sessions stop receiving");
                return;
            }
        };
        let mut table = lock(&table);
        let route = table.route(from, &buf);
        if route.is_err() {
            buf.clear();
        }
        match route {
            Ok(queue) => match queue.try_send((buf.split().freeze(), from)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    counters.queue_full.inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    counters.unroutable.inc();
                }
            },
            Err(Refused::BadIntegrity) => {
                counters.refused.inc();
                tracing::debug!(%from, "ice check with a bad integrity dropped");
            }
            Err(Refused::UnknownSource | Refused::UnknownUfrag) => {
                counters.unroutable.inc();
            }
        }
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// A session's place in the mux, held by its runtime, its sockets and its event handler;
/// ending it (explicitly when the connection closes or fails, or when the last holder is
/// dropped) evicts the session's ufrags and addresses from every table.
pub struct Registration {
    mux: Arc<UdpMux>,
    key: SessionKey,
    /// The session's queue on each shared socket (index as `mux.sockets`).
    queues: Vec<Arc<Mutex<mpsc::Receiver<Datagram>>>>,
    /// Its TCP listeners' queues (see [`tcp`]).
    tcp: Arc<tcp::SessionTcp>,
    ended: AtomicBool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .finish()
    }
}

impl Registration {
    /// Makes `ufrag` name this session on every shared socket (its newest ICE generation).
    pub fn add_credentials(&self, ufrag: &str, pwd: &str) -> Result<(), UfragTaken> {
        for shared in &self.mux.sockets {
            lock(&shared.table).add_credentials(self.key, ufrag, pwd)?;
        }
        Ok(())
    }

    /// Leaves the mux; idempotent.
    pub fn end(&self) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        for shared in &self.mux.sockets {
            lock(&shared.table).remove(self.key);
        }
        lock(&self.mux.tcp_sessions).remove(&self.key);
    }

    /// The runtime to build this session's peer connection with.
    pub fn runtime(self: &Arc<Self>) -> Arc<dyn Runtime> {
        Arc::new(MuxRuntime {
            registration: Arc::clone(self),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.end();
    }
}

/// [`TokioRuntime`] with the session's sockets replaced by views of the shared ones.
#[derive(Debug)]
pub struct MuxRuntime {
    registration: Arc<Registration>,
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(
        &self,
        pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(pool_size, future)
    }

    /// Drops the connection's own socket (bound to `ip:0` by the connection) and returns a
    /// view of the shared socket of that address; the dropped socket's address stays the
    /// connection's label for this path.
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let label = socket.local_addr()?;
        drop(socket);
        let mux = &self.registration.mux;
        let index = mux.socket_for(label).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no shared ICE socket serves {label}"),
            )
        })?;
        Ok(Arc::new(MuxedSocket {
            label,
            io: Arc::clone(&mux.sockets[index].io),
            queue: Arc::clone(&self.registration.queues[index]),
            _registration: Arc::clone(&self.registration),
        }))
    }

    /// Like [`Self::wrap_udp_socket`]: drops the connection's own listener and returns the
    /// session's view of the shared TCP port, labelled with the dropped listener's address.
    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        if self.registration.mux.tcp_port.is_none() {
            return TokioRuntime.wrap_tcp_listener(listener);
        }
        let label = listener.local_addr()?;
        drop(listener);
        Ok(self.registration.tcp.listener(label))
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.connect_tcp(remote_addr).await })
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.resolve_host(host).await })
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio-udpmux"
    }
}

/// One connection's view of a shared socket: it receives the session's queue for that socket
/// and sends through the shared socket.
struct MuxedSocket {
    label: SocketAddr,
    io: Arc<UdpSocket>,
    queue: Arc<Mutex<mpsc::Receiver<Datagram>>>,
    _registration: Arc<Registration>,
}

impl std::fmt::Debug for MuxedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxedSocket")
            .field("label", &self.label)
            .field("shared", &self.io.local_addr().ok())
            .finish()
    }
}

impl AsyncUdpSocket for MuxedSocket {
    /// The label, not the shared address: the connection keys its sockets and candidates by
    /// it, and must see a distinct address per path.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.label)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.io
            .poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        match lock(&self.queue).poll_recv(cx) {
            Poll::Ready(Some((datagram, from))) => {
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                let mut received = RecvMeta::default();
                received.addr = from;
                received.len = n;
                received.stride = n.max(1);
                *m = received;
                Poll::Ready(Ok(1))
            }
            // The session left the mux: nothing will arrive again.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_serves_the_concrete_addresses_of_its_family() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let any: IpAddr = [0, 0, 0, 0].into();
        let lo6: IpAddr = "::1".parse().unwrap();
        assert_eq!(bind_plan(&[lo, any]), vec![any]);
        assert_eq!(bind_plan(&[lo, lo6, lo]), vec![lo, lo6]);
        assert_eq!(bind_plan(&[any, lo6]), vec![any, lo6]);
    }

    #[tokio::test]
    async fn every_session_shares_one_socket_and_gets_only_its_datagrams() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let counters = MuxCounters::default();
        let mux = UdpMux::bind(&[lo], 0, None, counters.clone()).unwrap();
        assert_eq!(mux.local_addrs().len(), 1);
        let (a, b) = (mux.register(), mux.register());
        a.add_credentials("ufragA", "passwordApasswordA").unwrap();
        b.add_credentials("ufragB", "passwordBpasswordB").unwrap();
        assert_eq!(mux.sessions(), 2);
        let sock_a = a
            .runtime()
            .wrap_udp_socket(std::net::UdpSocket::bind((lo, 0)).unwrap())
            .unwrap();
        let sock_b = b
            .runtime()
            .wrap_udp_socket(std::net::UdpSocket::bind((lo, 0)).unwrap())
            .unwrap();
        assert_ne!(sock_a.local_addr().unwrap(), sock_b.local_addr().unwrap());

        let client = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let shared = mux.local_addrs()[0];
        let spoof = stun::signed_binding_request("ufragA:x", "passwordBpasswordB", [1; 12]);
        client.send_to(&spoof, shared).await.unwrap();
        let check = stun::signed_binding_request("ufragB:x", "passwordBpasswordB", [2; 12]);
        client.send_to(&check, shared).await.unwrap();
        client.send_to(&[0x80, 96, 0, 7], shared).await.unwrap();

        let mut buf = [0u8; 1500];
        let (n, from) = sock_b.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&check[..], client.local_addr().unwrap())
        );
        let (n, _) = sock_b.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            &buf[..n],
            &[0x80, 96, 0, 7],
            "media follows the learned address"
        );
        assert_eq!(counters.refused.get(), 1, "the spoofed check was refused");
        // The reader handles datagrams in order: the spoof was handled before B's check.
        use futures::FutureExt;
        assert!(
            sock_a.recv_from(&mut buf).now_or_never().is_none(),
            "A received nothing"
        );

        // Replies leave from the shared port.
        sock_b
            .send_to(b"reply", client.local_addr().unwrap())
            .await
            .unwrap();
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], shared));

        // An ended session leaves every table.
        b.end();
        assert_eq!(mux.sessions(), 1);
        drop((sock_a, a));
        assert_eq!(mux.sessions(), 0);
    }
}
