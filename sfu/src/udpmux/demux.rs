//! The demultiplexing table of one shared UDP socket: which session a datagram belongs to.
//!
//! A session is found first by the remote address it was learned at; a datagram from an
//! address nobody learned must be an ICE connectivity check (a STUN Binding request) whose
//! USERNAME names the session by the server's ufrag, and whose MESSAGE-INTEGRITY verifies with
//! that session's password: only then is its address learned. So a stranger who knows a ufrag
//! (it is in every answer the viewer's browser saw) cannot move a session's traffic to itself,
//! and an address that belongs to a live session is never handed to another.
//!
//! Sans-IO: plain data and methods, tested without sockets; it never sends or blocks.

use super::stun::BindingRequest;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// A session's key in the table (one per peer connection, unique per node).
pub type SessionKey = u64;

/// Remote addresses one session may hold at once: a client's host, reflexive and relayed
/// candidates that all pass their checks, and a NAT rebinding or two. The oldest is forgotten
/// when a further one is learned, so a client cannot grow the table.
pub const MAX_ADDRESSES: usize = 8;

/// ICE generations whose credentials a session keeps: the current one and the one before it,
/// whose consent checks still arrive while an ICE restart completes.
pub const GENERATIONS: usize = 2;

/// Why a datagram was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// From an unknown address and not a signed Binding request (late media of an ended
    /// session, a scan).
    UnknownSource,
    /// A Binding request naming a ufrag no session has.
    UnknownUfrag,
    /// A Binding request whose integrity does not verify with the named session's password.
    BadIntegrity,
}

/// The ufrag is already another session's (a collision of random ufrags, or a replay).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ice ufrag {0} is already in use on this node")]
pub struct UfragTaken(pub String);

struct Entry<T> {
    sink: T,
    /// (ufrag, pwd) of the session's recent ICE generations, newest last.
    credentials: VecDeque<(String, String)>,
    /// Addresses learned from verified checks, oldest first.
    addresses: VecDeque<SocketAddr>,
}

/// The table of one shared socket; `T` is what a datagram is delivered to (a queue).
pub struct Demux<T> {
    sessions: HashMap<SessionKey, Entry<T>>,
    by_ufrag: HashMap<String, SessionKey>,
    by_address: HashMap<SocketAddr, SessionKey>,
}

impl<T> Default for Demux<T> {
    fn default() -> Self {
        Self {
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_address: HashMap::new(),
        }
    }
}

impl<T> Demux<T> {
    /// Adds a session that has no credentials yet (it gets them when its answer is made).
    pub fn insert(&mut self, key: SessionKey, sink: T) {
        self.sessions.insert(
            key,
            Entry {
                sink,
                credentials: VecDeque::new(),
                addresses: VecDeque::new(),
            },
        );
    }

    /// Makes `ufrag` (with `pwd`) name session `key`, the newest of its ICE generations; the
    /// generation before the previous one is forgotten. Adding the current one again is a
    /// no-op. Unknown sessions are ignored.
    pub fn add_credentials(
        &mut self,
        key: SessionKey,
        ufrag: &str,
        pwd: &str,
    ) -> Result<(), UfragTaken> {
        match self.by_ufrag.get(ufrag) {
            Some(owner) if *owner != key => return Err(UfragTaken(ufrag.to_owned())),
            _ => {}
        }
        let Some(entry) = self.sessions.get_mut(&key) else {
            return Ok(());
        };
        if entry
            .credentials
            .iter()
            .any(|(u, p)| u == ufrag && p == pwd)
        {
            return Ok(());
        }
        entry.credentials.retain(|(u, _)| u != ufrag);
        entry
            .credentials
            .push_back((ufrag.to_owned(), pwd.to_owned()));
        while entry.credentials.len() > GENERATIONS {
            if let Some((old, _)) = entry.credentials.pop_front() {
                self.by_ufrag.remove(&old);
            }
        }
        self.by_ufrag.insert(ufrag.to_owned(), key);
        Ok(())
    }

    /// Forgets session `key`: its ufrags and addresses route nowhere any more.
    pub fn remove(&mut self, key: SessionKey) -> Option<T> {
        let entry = self.sessions.remove(&key)?;
        for (ufrag, _) in &entry.credentials {
            self.by_ufrag.remove(ufrag);
        }
        for address in &entry.addresses {
            self.by_address.remove(address);
        }
        Some(entry.sink)
    }

    /// Where the datagram `from` sent belongs.
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<&T, Refused> {
        if let Some(key) = self.by_address.get(&from).copied()
            && self.sessions.contains_key(&key)
        {
            return Ok(&self.sessions[&key].sink);
        }
        let key = self.authenticate(datagram)?;
        let Some(entry) = self.sessions.get_mut(&key) else {
            return Err(Refused::UnknownUfrag);
        };
        if entry.addresses.len() >= MAX_ADDRESSES
            && let Some(oldest) = entry.addresses.pop_front()
        {
            self.by_address.remove(&oldest);
        }
        entry.addresses.push_back(from);
        self.by_address.insert(from, key);
        Ok(&entry.sink)
    }

    /// The session `message` is a verified connectivity check of: a Binding request whose
    /// USERNAME names a session by its server ufrag and whose MESSAGE-INTEGRITY verifies with
    /// that session's password. Learns nothing (a TCP connection is its own path).
    pub fn authenticate(&self, message: &[u8]) -> Result<SessionKey, Refused> {
        let request = BindingRequest::parse(message).ok_or(Refused::UnknownSource)?;
        let ufrag = request.server_ufrag().ok_or(Refused::UnknownUfrag)?;
        let key = *self.by_ufrag.get(ufrag).ok_or(Refused::UnknownUfrag)?;
        let entry = self.sessions.get(&key).ok_or(Refused::UnknownUfrag)?;
        let verified = entry
            .credentials
            .iter()
            .any(|(u, pwd)| u == ufrag && request.verify(pwd));
        if verified {
            Ok(key)
        } else {
            Err(Refused::BadIntegrity)
        }
    }

    /// Sessions in the table.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Remote addresses learned, all sessions together.
    pub fn addresses(&self) -> usize {
        self.by_address.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stun::signed_binding_request;
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn check(server: &str, pwd: &str) -> Vec<u8> {
        signed_binding_request(&format!("{server}:client"), pwd, [9; 12])
    }

    const PWD_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    const PWD_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    fn table() -> Demux<&'static str> {
        let mut demux = Demux::default();
        demux.insert(1, "a");
        demux.insert(2, "b");
        demux.add_credentials(1, "ufragA", PWD_A).unwrap();
        demux.add_credentials(2, "ufragB", PWD_B).unwrap();
        demux
    }

    #[test]
    fn a_verified_check_learns_its_address_and_media_follows_it() {
        let mut demux = table();
        let rtp = [0x80, 96, 0, 1];
        assert_eq!(demux.route(addr(1000), &rtp), Err(Refused::UnknownSource));
        assert_eq!(demux.route(addr(1000), &check("ufragA", PWD_A)), Ok(&"a"));
        assert_eq!(demux.route(addr(1000), &rtp), Ok(&"a"));
        assert_eq!(demux.route(addr(2000), &check("ufragB", PWD_B)), Ok(&"b"));
        assert_eq!(demux.route(addr(2000), &rtp), Ok(&"b"));
        assert_eq!(demux.addresses(), 2);
        assert_eq!(
            demux.route(addr(3000), &check("nobody", PWD_A)),
            Err(Refused::UnknownUfrag)
        );
    }

    #[test]
    fn a_check_with_bad_integrity_never_moves_a_session() {
        let mut demux = table();
        assert_eq!(demux.route(addr(1000), &check("ufragA", PWD_A)), Ok(&"a"));
        // A spoofer knows A's ufrag (it is public in the answer) but not its password.
        assert_eq!(
            demux.route(addr(6666), &check("ufragA", PWD_B)),
            Err(Refused::BadIntegrity)
        );
        assert_eq!(
            demux.route(addr(6666), &[0x80, 96, 0, 1]),
            Err(Refused::UnknownSource),
            "nothing was learned for the spoofer"
        );
        // B's valid check from A's address is delivered to A, whose agent refuses it: an
        // address held by a live session is not handed to another.
        assert_eq!(demux.route(addr(1000), &check("ufragB", PWD_B)), Ok(&"a"));
        assert_eq!(demux.route(addr(1000), &[0x80]), Ok(&"a"));
    }

    #[test]
    fn an_ended_session_routes_nothing_and_frees_its_ufrag() {
        let mut demux = table();
        demux.route(addr(1000), &check("ufragA", PWD_A)).unwrap();
        assert_eq!(demux.remove(1), Some("a"));
        assert_eq!(
            demux.route(addr(1000), &[0x80]),
            Err(Refused::UnknownSource)
        );
        assert_eq!(
            demux.route(addr(1000), &check("ufragA", PWD_A)),
            Err(Refused::UnknownUfrag)
        );
        assert_eq!((demux.len(), demux.addresses()), (1, 0));
        demux.insert(3, "c");
        assert_eq!(demux.add_credentials(3, "ufragA", PWD_A), Ok(()));
        assert_eq!(
            demux.add_credentials(3, "ufragB", PWD_A),
            Err(UfragTaken("ufragB".into())),
            "a ufrag names one session"
        );
        assert_eq!(demux.remove(1), None);
    }

    #[test]
    fn a_restart_adds_a_generation_and_the_oldest_is_forgotten() {
        let mut demux = table();
        demux.add_credentials(1, "ufragA2", PWD_B).unwrap();
        assert_eq!(demux.route(addr(1), &check("ufragA", PWD_A)), Ok(&"a"));
        assert_eq!(demux.route(addr(2), &check("ufragA2", PWD_B)), Ok(&"a"));
        demux.add_credentials(1, "ufragA3", PWD_A).unwrap();
        assert_eq!(
            demux.route(addr(3), &check("ufragA", PWD_A)),
            Err(Refused::UnknownUfrag)
        );
        // The same generation again (a second gathering) changes nothing.
        demux.add_credentials(1, "ufragA3", PWD_A).unwrap();
        assert_eq!(demux.route(addr(4), &check("ufragA2", PWD_B)), Ok(&"a"));
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_addresses() {
        let mut demux = table();
        let a = check("ufragA", PWD_A);
        for port in 0..(MAX_ADDRESSES as u16 + 3) {
            demux.route(addr(port), &a).unwrap();
        }
        assert_eq!(demux.addresses(), MAX_ADDRESSES);
        assert_eq!(demux.route(addr(0), &[0x80]), Err(Refused::UnknownSource));
        assert_eq!(
            demux.route(addr(MAX_ADDRESSES as u16 + 2), &[0x80]),
            Ok(&"a")
        );
    }
}
