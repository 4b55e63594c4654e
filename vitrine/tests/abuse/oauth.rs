//! Attacks on the seller's consent and sign-in pages: an app that forges the seller's answer on
//! the consent page, and a sign-in link that sends the seller to another site afterwards.

use crate::browser::Browser;
use crate::support::{TestServer, hidden_fields};
use serde_json::json;

const REDIRECT: &str = "https://erp.example.com/oauth/callback";
/// A valid PKCE S256 challenge (43 characters of base64url).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn app(server: &TestServer) -> String {
    let developer = server.seller("Integrations Ltd").await;
    let (status, app) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/apps",
            &developer,
            None,
            Some(json!({ "name": "Acme ERP", "redirect_uris": [REDIRECT] })),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_str().unwrap().to_owned()
}

fn authorize_url(server: &TestServer, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "orders:read")
        .append_pair("state", "st-123")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    server.url(&format!("/oauth/authorize?{}", q.finish()))
}

fn query(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The seller presses Deny on a consent page whose authorization URL the app laced with
/// `decision=allow` (and a bogus `csrf`): the app gets `access_denied` and no code.
#[tokio::test]
async fn consent_cannot_be_forged_by_the_app() {
    let server = TestServer::start().await;
    let client_id = app(&server).await;
    let seller = server.seller("Ann's boutique").await;
    for extra in [
        &[("decision", "allow")][..],
        &[("decision", "allow"), ("csrf", "x")][..],
        &[
            ("csrf", "x"),
            ("decision", "allow"),
            ("iss", "https://evil.example"),
        ][..],
    ] {
        let mut browser = Browser::new(&server);
        let r = browser.sign_in_to(&server, &seller, "/developers").await;
        assert_eq!(r.status(), 303);
        let page = browser
            .get(&authorize_url(&server, &client_id, extra))
            .await;
        assert_eq!(page.status(), 200);
        let mut form = hidden_fields(&page.text().await.unwrap());
        // The Deny button.
        form.push(("decision".into(), "deny".into()));
        let r = browser.post(&server.url("/oauth/authorize"), &form).await;
        assert_eq!(r.status(), 303, "{extra:?}");
        let back = query(r.headers()["location"].to_str().unwrap());
        assert!(
            back.iter()
                .any(|(k, v)| k == "error" && v == "access_denied"),
            "{extra:?}: {back:?}"
        );
        assert!(
            !back.iter().any(|(k, _)| k == "code"),
            "{extra:?}: {back:?}"
        );
        form.pop();
        let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            !names.contains(&"decision") && names.iter().filter(|n| **n == "csrf").count() == 1,
            "the consent form carries only the request and one csrf: {names:?}"
        );
    }
}

/// A consent form with a parameter twice (two decisions, two scopes) is refused with the error
/// page; so is an authorization URL with a parameter twice.
#[tokio::test]
async fn repeated_authorization_parameters_are_refused() {
    let server = TestServer::start().await;
    let client_id = app(&server).await;
    let seller = server.seller("Ann's boutique").await;
    let mut browser = Browser::new(&server);
    browser.sign_in_to(&server, &seller, "/").await;
    let twice = authorize_url(&server, &client_id, &[("scope", "products:read")]);
    assert_eq!(browser.get(&twice).await.status(), 400);
    let page = browser.get(&authorize_url(&server, &client_id, &[])).await;
    let form = hidden_fields(&page.text().await.unwrap());
    for dup in [("decision", "allow"), ("scope", "products:write")] {
        let mut twice = form.clone();
        twice.push((dup.0.into(), dup.1.into()));
        twice.push(("decision".into(), "deny".into()));
        let r = browser.post(&server.url("/oauth/authorize"), &twice).await;
        assert_eq!(r.status(), 400, "{dup:?}");
        assert!(r.headers().get("location").is_none());
    }
}

/// After signing in, a `return_to` that a browser reads as another site (tabs and newlines
/// are dropped by browsers, backslashes read as slashes) sends the seller to our own `/`.
#[tokio::test]
async fn sign_in_never_redirects_off_site() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann's boutique").await;
    let base = url::Url::parse(&server.base).unwrap();
    for evil in [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r\n/evil.example",
        "//evil.example",
        "/\\evil.example",
        "\t//evil.example",
        "https://evil.example/",
        "/%09/evil.example",
        "/ /evil.example",
    ] {
        let mut browser = Browser::new(&server);
        let r = browser.sign_in_to(&server, &seller, evil).await;
        assert_eq!(r.status(), 303, "{evil:?}");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        // What a browser does with it: WHATWG URL parsing against the page's URL.
        let to = base.join(&location).unwrap();
        assert_eq!(to.origin(), base.origin(), "{evil:?} -> {location:?}");
    }
    // A real local path survives, query included.
    let r = Browser::new(&server)
        .sign_in_to(&server, &seller, "/developers?tab=apps")
        .await;
    assert_eq!(r.headers()["location"], "/developers?tab=apps");
}
