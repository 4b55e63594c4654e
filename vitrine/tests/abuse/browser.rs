//! A browser in a test's hands: it follows no redirect (so every 303 can be read), keeps its
//! cookies, and fills in forms from the pages' own hidden fields, as a person's browser would.

use crate::support::{self, TestServer, hidden_fields};

/// A browser that follows no redirect and keeps its cookies.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: Vec<String>,
    /// The client address the trusted proxy reports, if any.
    pub from: Option<&'static str>,
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: support::client_builder(server.tls_cert_pem.as_deref())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
            from: None,
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
    }

    pub async fn send(&mut self, r: reqwest::RequestBuilder) -> reqwest::Response {
        let mut r = r.header("cookie", self.cookies.join("; "));
        if let Some(from) = self.from {
            r = r.header("x-forwarded-for", from);
        }
        let r = r.send().await.unwrap();
        self.keep(&r);
        r
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let r = self.http.get(url);
        self.send(r).await
    }

    pub async fn post(&mut self, url: &str, form: &[(String, String)]) -> reqwest::Response {
        let r = self.http.post(url).form(form);
        self.send(r).await
    }

    /// The sign-in page's hidden fields, for a sign-in that returns to `return_to`.
    pub async fn signin_form(
        &mut self,
        server: &TestServer,
        return_to: &str,
    ) -> Vec<(String, String)> {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", return_to)
            .finish();
        let page = self.get(&server.url(&format!("/signin?{q}"))).await;
        assert_eq!(page.status(), 200);
        hidden_fields(&page.text().await.unwrap())
    }

    /// Signs in through the page, as a person would (the page's own fields, the token typed
    /// in), to be sent back to `return_to`; the answer.
    pub async fn sign_in_to(
        &mut self,
        server: &TestServer,
        token: &str,
        return_to: &str,
    ) -> reqwest::Response {
        let mut form = self.signin_form(server, return_to).await;
        form.push(("api_token".into(), token.into()));
        self.post(&server.url("/signin"), &form).await
    }

    /// Signs in to the developer portal.
    pub async fn sign_in(&mut self, server: &TestServer, token: &str) -> reqwest::Response {
        self.sign_in_to(server, token, "/developers").await
    }
}

/// The session cookie a response sets, if any.
pub fn session_set_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("vitrine_session="))
}
