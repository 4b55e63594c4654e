//! The query of `/oauth/authorize` as a third-party app writes it: decoding into the seven
//! authorization parameters, then the pure checks a request goes through (scope list, PKCE
//! challenge and verifier, redirect URI registration, matching and the redirect built back).
//! No panic; a registered redirect URI keeps its origin after parameters are appended, so an
//! answer can never be sent anywhere else.

#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;
use vitrine_platform::oauth::{AuthorizationParams, TokenParams};
use vitrine_platform::pkce::Challenge;
use vitrine_platform::redirect::{matching, validate_registration, with_params};
use vitrine_platform::scope::Scopes;

fuzz_target!(|data: &[u8]| {
    let _ = serde_urlencoded::from_bytes::<TokenParams>(data);
    let Ok(p) = serde_urlencoded::from_bytes::<AuthorizationParams>(data) else {
        return;
    };
    if let Some(raw) = p.scope.as_deref()
        && let Ok(scopes) = Scopes::parse(raw)
    {
        // The canonical form parses back to the same set.
        assert_eq!(Scopes::parse(&scopes.to_string()), Ok(scopes));
    }
    let challenge = p.code_challenge.as_deref().unwrap_or_default();
    if let Ok(c) = Challenge::from_request(challenge, p.code_challenge_method.as_deref()) {
        assert_eq!(c.as_str().len(), 43);
        // Any string may come back as a verifier, here the state.
        let _ = c.verify(p.state.as_deref().unwrap_or_default());
    }
    if let Some(uri) = p.redirect_uri {
        redirect(uri, p.state.as_deref().unwrap_or_default());
    }
});

/// Registers `uri` and sends an answer to it; the answer must stay on the registered origin.
fn redirect(uri: String, state: &str) {
    let registered = vec![uri];
    assert_eq!(
        matching(&registered, &registered[0]),
        Some(registered[0].as_str())
    );
    if validate_registration(&registered).is_err() {
        return;
    }
    let before = Url::parse(&registered[0]).expect("a registered URI parses");
    let location = with_params(&registered[0], &[("code", "c"), ("state", state)]);
    let after = Url::parse(&location).expect("the answer's location parses");
    assert_eq!(after.scheme(), before.scheme(), "{location}");
    assert_eq!(after.host_str(), before.host_str(), "{location}");
    assert_eq!(after.port(), before.port(), "{location}");
    assert_eq!(after.path(), before.path(), "{location}");
    assert!(after.fragment().is_none());
    assert!(after.query_pairs().any(|(k, v)| k == "state" && v == state));
}
