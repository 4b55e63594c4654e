//! Translation of caption text behind one narrow trait, so the live role and the replay jobs
//! do not care which backend an operator runs. Shipped here: an HTTP client of a
//! LibreTranslate-compatible service. (Whisper's own translate-to-English task works on the
//! audio, not on text: it is a [`crate::transcriber::Request`] option, used by the replay
//! jobs and the CLI.)

use std::time::Duration;

/// Longest text sent in one request (a caption is a sentence or two).
pub const MAX_TEXT: usize = 2_000;
/// A translation slower than this is given up (the caption goes out untranslated).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply read from the service: a translation of [`MAX_TEXT`] bytes, JSON-escaped,
/// in any script, fits many times over. A longer reply is refused unread, so a broken or
/// hostile service cannot make the server hold megabytes per caption.
pub const MAX_REPLY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("text longer than {MAX_TEXT} bytes")]
    TooLong,
    #[error("translation service: {0}")]
    Service(String),
    #[error("translation service answered {0}: {1}")]
    Rejected(u16, String),
}

/// Translates caption text from one language into another (ISO 639-1 codes).
#[async_trait::async_trait]
pub trait Translator: Send + Sync + 'static {
    async fn translate(&self, text: &str, from: &str, to: &str) -> Result<String, TranslateError>;
    /// A short name for logs and reports.
    fn name(&self) -> &str;
}

/// A LibreTranslate-compatible service (`POST {url}/translate`), run by the operator.
pub struct LibreTranslate {
    url: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl LibreTranslate {
    pub fn new(url: &str, api_key: Option<String>) -> Result<Self, TranslateError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| TranslateError::Service(e.to_string()))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            api_key,
            http,
        })
    }
}

#[derive(serde::Serialize)]
struct LibreRequest<'a> {
    q: &'a str,
    source: &'a str,
    target: &'a str,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct LibreReply {
    #[serde(rename = "translatedText")]
    translated_text: Option<String>,
    error: Option<String>,
}

#[async_trait::async_trait]
impl Translator for LibreTranslate {
    async fn translate(&self, text: &str, from: &str, to: &str) -> Result<String, TranslateError> {
        if text.len() > MAX_TEXT {
            return Err(TranslateError::TooLong);
        }
        if from == to || text.trim().is_empty() {
            return Ok(text.to_owned());
        }
        let response = self
            .http
            .post(format!("{}/translate", self.url))
            .json(&LibreRequest {
                q: text,
                source: from,
                target: to,
                format: "text",
                api_key: self.api_key.as_deref(),
            })
            .send()
            .await
            .map_err(|e| TranslateError::Service(e.without_url().to_string()))?;
        let status = response.status();
        let body = read_bounded(response, MAX_REPLY)
            .await
            .map_err(|why| TranslateError::Rejected(status.as_u16(), why))?;
        let reply: Result<LibreReply, _> = serde_json::from_slice(&body);
        match reply {
            Ok(LibreReply {
                translated_text: Some(t),
                ..
            }) if status.is_success() => Ok(t),
            Ok(LibreReply { error, .. }) => Err(TranslateError::Rejected(
                status.as_u16(),
                error.unwrap_or_else(|| "no translatedText in the reply".into()),
            )),
            Err(e) => Err(TranslateError::Rejected(status.as_u16(), e.to_string())),
        }
    }

    fn name(&self) -> &str {
        "libretranslate"
    }
}

/// The body of `response`, refused once it passes `limit` bytes (declared or sent).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("reply larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_fails_clearly_without_calling_for_nothing() {
        // Nothing listens on port 1: a clear service error, not a panic.
        let down = LibreTranslate::new("http://127.0.0.1:1/", None).unwrap();
        let err = down
            .translate("Half price today.", "en", "es")
            .await
            .unwrap_err();
        assert!(matches!(err, TranslateError::Service(_)), "{err}");
        assert!(err.to_string().starts_with("translation service: "));
        // Bounded input, and nothing to ask for the same language or empty text.
        let long = "a".repeat(MAX_TEXT + 1);
        assert!(matches!(
            down.translate(&long, "en", "es").await,
            Err(TranslateError::TooLong)
        ));
        assert_eq!(down.translate("Hola", "es", "es").await.unwrap(), "Hola");
        assert_eq!(down.translate("  ", "en", "de").await.unwrap(), "  ");
        assert_eq!(down.name(), "libretranslate");
    }

    /// A service that answers with far more than any translation of a caption (a broken or
    /// hostile service): the client stops reading at its bound and refuses the reply instead of
    /// holding megabytes in memory or passing them on as a caption.
    #[tokio::test]
    async fn an_oversized_reply_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let huge = format!("{{\"translatedText\":\"{}\"}}", "a".repeat(8 << 20));
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                huge.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            // The client may hang up once it has read enough.
            let _ = socket.write_all(huge.as_bytes()).await;
        });
        let client = LibreTranslate::new(&format!("http://{addr}"), None).unwrap();
        let err = match client.translate("Half price today.", "en", "es").await {
            Ok(t) => panic!("a reply of {} bytes was taken", t.len()),
            Err(e) => e,
        };
        assert!(
            matches!(err, TranslateError::Rejected(200, ref why) if why.contains("larger than")),
            "{err}"
        );
        server.abort();
    }
}
