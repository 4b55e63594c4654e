//! Server-rendered pages a seller acts on in person (sign-in, OAuth2 consent): one HTML shell,
//! text always escaped, and headers that keep the pages out of frames and caches.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page: `title` is text, `body` is already-escaped HTML.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Vitrine</title><link rel=\"stylesheet\" href=\"/assets/vitrine.css\"></head>\
         <body><header class=\"bar\"><a class=\"brand\" href=\"/\">vitrine</a>\
         <span class=\"title\">{title}</span></header><main class=\"narrow\">{body}</main></body></html>",
        title = esc(title),
    );
    html_response(
        status,
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'",
        html,
    )
}

/// An HTML answer for a page a seller acts on: never cached, never framed (consent and keys
/// must be given on Vitrine's own page, not inside another site's frame), under `csp`.
pub fn html_response(status: StatusCode, csp: &'static str, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        html,
    )
        .into_response()
}

/// Hidden form fields carrying `pairs` through a POST.
pub fn hidden(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(
            hidden(&[("state", "\"><b>")]),
            r#"<input type="hidden" name="state" value="&quot;&gt;&lt;b&gt;">"#
        );
    }
}
