//! Redirect URIs: what an app may register, and the exact-match rule at authorization time
//! (RFC 9700 §2.1: no patterns, no prefix matching, so that a code can only ever travel to a
//! URI the app's owner wrote down).

use url::Url;

/// Most redirect URIs one app may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI accepted.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("an app needs 1 to {MAX_REDIRECT_URIS} redirect URIs")]
    Count,
    #[error(
        "redirect URI `{0}` is not an absolute URI of at most {MAX_REDIRECT_URI_LEN} characters"
    )]
    Malformed(String),
    #[error("redirect URI `{0}` has a fragment")]
    Fragment(String),
    #[error(
        "redirect URI `{0}` must use https, http on a loopback address, or an app's own reverse-domain scheme"
    )]
    Insecure(String),
}

/// Checks the URIs an app registers.
pub fn validate_registration(uris: &[String]) -> Result<(), RedirectError> {
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Err(RedirectError::Count);
    }
    for raw in uris {
        if raw.len() > MAX_REDIRECT_URI_LEN {
            return Err(RedirectError::Malformed(raw.clone()));
        }
        let url = Url::parse(raw).map_err(|_| RedirectError::Malformed(raw.clone()))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(RedirectError::Fragment(raw.clone()));
        }
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        let allowed = match url.scheme() {
            "https" => url.host_str().is_some(),
            "http" => loopback,
            // RFC 8252 §7.1: a native app's private-use scheme is a reverse domain name.
            scheme => scheme.contains('.'),
        };
        if !allowed {
            return Err(RedirectError::Insecure(raw.clone()));
        }
    }
    Ok(())
}

/// The registered URI that `presented` names, compared as exact strings.
pub fn matching<'a>(registered: &'a [String], presented: &str) -> Option<&'a str> {
    registered
        .iter()
        .find(|r| r.as_str() == presented)
        .map(String::as_str)
}

/// `uri` with `params` appended to its query (keeping any query it was registered with).
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.into()
        }
        // Only validated URIs get here; fall back to the URI as it is rather than panic.
        Err(_) => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(uris: &[&str]) -> Result<(), RedirectError> {
        validate_registration(&uris.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn secure_and_loopback_and_native_uris_register() {
        v(&[
            "https://erp.example.com/oauth/callback",
            "http://127.0.0.1:8765/cb",
            "http://localhost/cb",
            "com.example.pos:/oauth",
        ])
        .unwrap();
    }

    #[test]
    fn insecure_fragment_and_malformed_uris_do_not() {
        assert!(matches!(
            v(&["http://erp.example.com/cb"]),
            Err(RedirectError::Insecure(_))
        ));
        assert!(matches!(
            v(&["https://a.example/cb#x"]),
            Err(RedirectError::Fragment(_))
        ));
        assert!(matches!(
            v(&["/relative"]),
            Err(RedirectError::Malformed(_))
        ));
        assert!(matches!(
            v(&["javascript:alert(1)"]),
            Err(RedirectError::Insecure(_))
        ));
        assert_eq!(v(&[]), Err(RedirectError::Count));
        let many: Vec<_> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
        assert_eq!(validate_registration(&many), Err(RedirectError::Count));
    }

    #[test]
    fn matching_is_exact() {
        let reg = vec!["https://a.example/cb".to_string()];
        assert_eq!(
            matching(&reg, "https://a.example/cb"),
            Some("https://a.example/cb")
        );
        for near in [
            "https://a.example/cb/",
            "https://a.example/cb?x=1",
            "https://A.example/cb",
            "https://a.example/c",
            "https://a.example/cb/../cb",
        ] {
            assert_eq!(matching(&reg, near), None, "{near}");
        }
    }

    #[test]
    fn params_are_appended_and_encoded() {
        assert_eq!(
            with_params(
                "https://a.example/cb?tenant=1",
                &[("code", "c 1"), ("state", "s&t")]
            ),
            "https://a.example/cb?tenant=1&code=c+1&state=s%26t"
        );
    }
}
