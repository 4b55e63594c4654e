//! A forwarding region vouches for its caller's address. A call one region forwards to another
//! reaches the home from the forwarding node's address; per-address limits there would lump
//! every forwarded caller together (one greedy caller would use up everyone's allowance). So
//! the forwarding node signs the caller's address, with the time and the request's method and
//! path, under the regions' shared secret; the home counts the call against the signed address
//! when the signature holds and is fresh, and against the connection's address otherwise.
//! Sans-IO: the caller passes the time.

use axum::http::{HeaderMap, HeaderValue, Method};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use vitrine_core::Region;

/// The header that carries `<address> <unix seconds> <hex HMAC-SHA256>`.
pub const CLIENT_ADDRESS: &str = "vitrine-client-address";
/// How far a voucher's time may be from the home's clock (forwarding takes milliseconds; the
/// slack is for clocks).
pub const FRESH_SECS: u64 = 60;
/// The shortest regions' secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

/// Unix seconds now: the time a voucher is signed and checked at.
pub fn now_secs() -> u64 {
    (vitrine_core::time::Timestamp::now().millis() / 1000).max(0) as u64
}

/// The secret every region's nodes share, to vouch for forwarded callers.
#[derive(Clone)]
pub struct RegionsKey(Vec<u8>);

impl std::fmt::Debug for RegionsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegionsKey(..)")
    }
}

/// A voucher that held: the caller's address and the region that forwarded the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub ip: IpAddr,
    pub from: Region,
}

impl RegionsKey {
    /// `None` when `secret` is shorter than [`MIN_SECRET_BYTES`].
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_SECRET_BYTES).then(|| Self(secret.to_vec()))
    }

    fn mac(&self, from: &Region, ip: IpAddr, at: u64, method: &Method, path: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        // Newline-separated: none of the parts can hold one (a path's is percent-encoded).
        mac.update(format!("{from}\n{ip}\n{at}\n{method}\n{path}").as_bytes());
        mac
    }

    /// The header value `from` sends with a call of `ip` for `method` `path` at `now`.
    pub fn vouch(
        &self,
        from: &Region,
        ip: IpAddr,
        now: u64,
        method: &Method,
        path: &str,
    ) -> HeaderValue {
        let tag = hex::encode(
            self.mac(from, ip, now, method, path)
                .finalize()
                .into_bytes(),
        );
        HeaderValue::from_str(&format!("{ip} {now} {tag}")).expect("an address, digits and hex")
    }

    /// The vouched-for caller of a request that names the forwarding region in `forwarded_from`
    /// and carries a voucher signed for its method and path within [`FRESH_SECS`] of `now`;
    /// `None` for anything else (the caller is then whoever connected).
    pub fn vouched(
        &self,
        headers: &HeaderMap,
        forwarded_from: &str,
        method: &Method,
        path: &str,
        now: u64,
    ) -> Option<Vouched> {
        let from = Region::parse(headers.get(forwarded_from)?.to_str().ok()?).ok()?;
        let raw = headers.get(CLIENT_ADDRESS)?.to_str().ok()?;
        let mut parts = raw.split(' ');
        let ip: IpAddr = parts.next()?.parse().ok()?;
        let at: u64 = parts.next()?.parse().ok()?;
        let tag = hex::decode(parts.next()?).ok()?;
        if parts.next().is_some() || now.abs_diff(at) > FRESH_SECS {
            return None;
        }
        self.mac(&from, ip, at, method, path)
            .verify_slice(&tag)
            .ok()?;
        Some(Vouched { ip, from })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "vitrine-forwarded-from";

    fn signed(key: &RegionsKey, from: &str, ip: &str, at: u64, path: &str) -> HeaderMap {
        let region = Region::parse(from).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(FROM, HeaderValue::from_str(from).unwrap());
        let v = key.vouch(&region, ip.parse().unwrap(), at, &Method::GET, path);
        headers.insert(CLIENT_ADDRESS, v);
        headers
    }

    #[test]
    fn a_fresh_voucher_for_this_request_names_the_caller() {
        let key = RegionsKey::from_secret(&[1; 32]).unwrap();
        let headers = signed(&key, "eu", "203.0.113.7", 1_000, "/api/v1/public/streams/x");
        let got = key.vouched(
            &headers,
            FROM,
            &Method::GET,
            "/api/v1/public/streams/x",
            1_030,
        );
        assert_eq!(
            got,
            Some(Vouched {
                ip: "203.0.113.7".parse().unwrap(),
                from: Region::parse("eu").unwrap(),
            })
        );
        let v6 = signed(&key, "us", "2001:db8::1", 1_000, "/a");
        let got = key.vouched(&v6, FROM, &Method::GET, "/a", 1_000).unwrap();
        assert_eq!(got.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn stale_moved_forged_or_foreign_vouchers_name_nobody() {
        let key = RegionsKey::from_secret(&[1; 32]).unwrap();
        let path = "/api/v1/orders";
        let headers = signed(&key, "eu", "203.0.113.7", 1_000, path);
        let at = |now| key.vouched(&headers, FROM, &Method::GET, path, now);
        assert!(at(1_060).is_some() && at(940).is_some());
        assert_eq!(at(1_061), None, "stale");
        assert_eq!(at(939), None, "from the future");
        // Another method or path: a voucher is for one request.
        assert_eq!(
            key.vouched(&headers, FROM, &Method::POST, path, 1_000),
            None
        );
        assert_eq!(
            key.vouched(&headers, FROM, &Method::GET, "/api/v1/x", 1_000),
            None
        );
        // Another secret signed it.
        let other = RegionsKey::from_secret(&[2; 32]).unwrap();
        assert_eq!(
            other.vouched(&headers, FROM, &Method::GET, path, 1_000),
            None
        );
        // The address or the region changed under the signature.
        let mut moved = headers.clone();
        let raw = moved[CLIENT_ADDRESS]
            .to_str()
            .unwrap()
            .replacen("203.0.113.7", "203.0.113.8", 1);
        moved.insert(CLIENT_ADDRESS, HeaderValue::from_str(&raw).unwrap());
        assert_eq!(key.vouched(&moved, FROM, &Method::GET, path, 1_000), None);
        let mut renamed = headers.clone();
        renamed.insert(FROM, HeaderValue::from_static("us"));
        assert_eq!(key.vouched(&renamed, FROM, &Method::GET, path, 1_000), None);
        // Malformed values.
        for bad in [
            "",
            "203.0.113.7",
            "203.0.113.7 1000",
            "x 1000 00",
            "203.0.113.7 1000 zz",
            "203.0.113.7 1000 00 00",
        ] {
            let mut h = headers.clone();
            h.insert(CLIENT_ADDRESS, HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                key.vouched(&h, FROM, &Method::GET, path, 1_000),
                None,
                "{bad:?}"
            );
        }
        let mut unnamed = headers.clone();
        unnamed.remove(FROM);
        assert_eq!(key.vouched(&unnamed, FROM, &Method::GET, path, 1_000), None);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(RegionsKey::from_secret(&[0; 31]).is_none());
        assert!(RegionsKey::from_secret(&[0; 32]).is_some());
    }
}
