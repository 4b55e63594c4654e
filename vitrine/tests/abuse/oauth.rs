//! Attacks on the seller's consent and sign-in pages: an app that forges the seller's answer on
//! the consent page, and a sign-in link that sends the seller to another site afterwards.

use crate::support::{self, TestServer};
use serde_json::json;

const REDIRECT: &str = "https://erp.example.com/oauth/callback";
/// A valid PKCE S256 challenge (43 characters of base64url).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser that follows no redirect, so every 303 can be read, and carries its cookies.
struct Browser {
    http: reqwest::Client,
    cookies: Vec<String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: support::client_builder(None)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let r = self
            .http
            .get(url)
            .header("cookie", self.cookies.join("; "))
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    async fn post(&mut self, url: &str, form: &[(String, String)]) -> reqwest::Response {
        let r = self
            .http
            .post(url)
            .header("cookie", self.cookies.join("; "))
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Signs in through the sign-in page as a person would: the page's own form fields, the
    /// token typed in. Returns the sign-in answer.
    async fn sign_in(&mut self, server: &TestServer, token: &str, return_to: &str) -> reqwest::Response {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", return_to)
            .finish();
        let page = self.get(&server.url(&format!("/signin?{q}"))).await;
        assert_eq!(page.status(), 200);
        let mut form = hidden_fields(&page.text().await.unwrap());
        form.push(("api_token".into(), token.into()));
        self.post(&server.url("/signin"), &form).await
    }
}

/// The hidden inputs of a page's form, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + tag[start..].find('"').unwrap();
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            (attr(tag, "name"), attr(tag, "value"))
        })
        .collect()
}

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
        &[("csrf", "x"), ("decision", "allow"), ("iss", "https://evil.example")][..],
    ] {
        let mut browser = Browser::new();
        let r = browser.sign_in(&server, &seller, "/developers").await;
        assert_eq!(r.status(), 303);
        let page = browser.get(&authorize_url(&server, &client_id, extra)).await;
        assert_eq!(page.status(), 200);
        let mut form = hidden_fields(&page.text().await.unwrap());
        // The Deny button.
        form.push(("decision".into(), "deny".into()));
        let r = browser.post(&server.url("/oauth/authorize"), &form).await;
        assert_eq!(r.status(), 303, "{extra:?}");
        let back = query(r.headers()["location"].to_str().unwrap());
        assert!(
            back.iter().any(|(k, v)| k == "error" && v == "access_denied"),
            "{extra:?}: {back:?}"
        );
        assert!(!back.iter().any(|(k, _)| k == "code"), "{extra:?}: {back:?}");
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
    let mut browser = Browser::new();
    browser.sign_in(&server, &seller, "/").await;
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
        let mut browser = Browser::new();
        let r = browser.sign_in(&server, &seller, evil).await;
        assert_eq!(r.status(), 303, "{evil:?}");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        // What a browser does with it: WHATWG URL parsing against the page's URL.
        let to = base.join(&location).unwrap();
        assert_eq!(to.origin(), base.origin(), "{evil:?} -> {location:?}");
    }
    // A real local path survives, query included.
    let r = Browser::new()
        .sign_in(&server, &seller, "/developers?tab=apps")
        .await;
    assert_eq!(r.headers()["location"], "/developers?tab=apps");
}

