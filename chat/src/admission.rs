//! Admission of chat websockets: how many one client address and one room may hold on this
//! node, so that one address cannot take every connection (each costs a task, buffers and a
//! place in the room's fan-out) and one room cannot take the node.
//!
//! A connection is admitted before the websocket upgrade and holds a [`Seat`] until it ends;
//! dropping the seat gives it back. The counts are plain data behind one lock, taken once per
//! connection and once per departure, never per frame. The client address is given by the
//! caller (the route reads it from the request), so that what counts as the client (the TCP
//! peer, or the address a trusted proxy forwarded) is decided outside this module.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vitrine_core::StreamId;

/// How long a refused client is asked to wait: members leave at their own pace.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many chat connections from this address")]
    TooManyFromAddress,
    #[error("this chat room is full on this server")]
    RoomFull,
}

#[derive(Debug, Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    by_room: HashMap<StreamId, usize>,
}

/// The chat connections of one node, by client address and by room.
#[derive(Debug, Clone)]
pub struct Admission {
    /// 0: no cap.
    per_address: usize,
    /// 0: no cap.
    per_room: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Seat {
    address: IpAddr,
    room: StreamId,
    counts: Arc<Mutex<Counts>>,
}

/// What the per-address cap counts by: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber line gets a whole /64 and can pick any address in it).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

impl Admission {
    pub fn new(per_address: usize, per_room: usize) -> Self {
        Self {
            per_address,
            per_room,
            counts: Arc::default(),
        }
    }

    /// Admits a connection from `client` to `room`, or says why not.
    pub fn admit(&self, client: IpAddr, room: &StreamId) -> Result<Seat, Refusal> {
        let address = address_key(client);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let from = counts.by_address.get(&address).copied().unwrap_or(0);
        if self.per_address > 0 && from >= self.per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        let members = counts.by_room.get(room).copied().unwrap_or(0);
        if self.per_room > 0 && members >= self.per_room {
            return Err(Refusal::RoomFull);
        }
        *counts.by_address.entry(address).or_default() += 1;
        *counts.by_room.entry(room.clone()).or_default() += 1;
        Ok(Seat {
            address,
            room: room.clone(),
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Seat {
    /// The address this connection was admitted for (an IPv6 client's /64).
    pub fn client(&self) -> vitrine_core::ClientIp {
        vitrine_core::ClientIp(self.address)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        decrement(&mut counts.by_address, self.address);
        decrement(&mut counts.by_room, self.room.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_hold_per_address_and_per_room_and_seats_come_back() {
        let admission = Admission::new(2, 3);
        let (room, other) = (StreamId::generate(), StreamId::generate());
        let a1 = admission.admit(ip("198.51.100.7"), &room).unwrap();
        let _a2 = admission.admit(ip("198.51.100.7"), &room).unwrap();
        assert_eq!(
            admission.admit(ip("198.51.100.7"), &other).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let _b1 = admission.admit(ip("203.0.113.9"), &room).unwrap();
        assert_eq!(
            admission.admit(ip("203.0.113.9"), &room).unwrap_err(),
            Refusal::RoomFull
        );
        // Another room is not full.
        let _b2 = admission.admit(ip("203.0.113.9"), &other).unwrap();
        drop(a1);
        let _a3 = admission.admit(ip("198.51.100.7"), &room).unwrap();
        assert!(admission.counts.lock().unwrap().by_address.len() == 2);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_v4_as_v4() {
        let admission = Admission::new(1, 0);
        let room = StreamId::generate();
        let _a = admission.admit(ip("2001:db8:1:2::1"), &room).unwrap();
        assert_eq!(
            admission
                .admit(ip("2001:db8:1:2:ffff::9"), &room)
                .unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let _b = admission.admit(ip("2001:db8:1:3::1"), &room).unwrap();
        let _c = admission.admit(ip("198.51.100.7"), &room).unwrap();
        assert!(admission.admit(ip("::ffff:198.51.100.7"), &room).is_err());
    }

    #[test]
    fn zero_means_no_cap_and_empty_entries_are_forgotten() {
        let admission = Admission::new(0, 0);
        let room = StreamId::generate();
        let seats: Vec<_> = (0..1000)
            .map(|_| admission.admit(ip("198.51.100.7"), &room).unwrap())
            .collect();
        drop(seats);
        let counts = admission.counts.lock().unwrap();
        assert!(counts.by_address.is_empty() && counts.by_room.is_empty());
    }
}
