//! The LibreTranslate-compatible API on the real model over loopback: the shapes the Vitrine
//! server's client and other LibreTranslate clients send (JSON, form, lists), the language
//! list, the API key, bounded inputs, problem JSON errors and metrics.

use std::sync::Arc;
use vitrine_translator::http::{Access, router};
use vitrine_translator::metrics::TranslatorMetrics;
use vitrine_translator::{Engine, Translator};

async fn serve(access: Access) -> String {
    let engine = Arc::new(Engine::load(&vitrine_translator::default_model(), 2).unwrap());
    let metrics = TranslatorMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let translator = Translator::start(engine, 1, metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router(translator, access, registry))
            .await
            .unwrap()
    });
    url
}

/// The JSON reply of a request that must succeed.
async fn ok_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_libretranslate_shapes() {
    let url = serve(Access::open()).await;
    let http = reqwest::Client::new();
    let translate = || http.post(format!("{url}/translate"));

    let one = ok_json(translate().json(&serde_json::json!({"q": "Thank you very much.", "source": "en", "target": "es", "format": "text"}))).await;
    let text = one["translatedText"].as_str().unwrap();
    assert!(text.to_lowercase().contains("gracias"), "{one}");

    let many = ok_json(translate().json(&serde_json::json!({"q": ["Thank you very much.", "", "Thank you very much."], "source": "en", "target": "de"}))).await;
    let list = many["translatedText"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{many}");
    assert_eq!(list[1], "");
    assert_eq!(list[0], list[2]);
    assert!(
        list[0].as_str().unwrap().to_lowercase().contains("dank"),
        "{many}"
    );

    let form = ok_json(
        translate()
            .header("content-type", "application/x-www-form-urlencoded")
            .body("q=Thank+you+very+much.&source=en&target=es"),
    )
    .await;
    assert_eq!(form["translatedText"], one["translatedText"]);

    let languages = ok_json(http.get(format!("{url}/languages"))).await;
    let codes: Vec<&str> = languages
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"en") && codes.contains(&"de"),
        "{languages}"
    );

    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Four texts went to the model (the empty one did not).
    assert!(
        metrics.contains("vitrine_translator_translations_total 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_requests_get_problem_json() {
    let url = serve(Access::with_key("s3cret")).await;
    let http = reqwest::Client::new();
    let send = |body: serde_json::Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(format!("{url}/translate"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, kind, body)
        }
    };
    let (status, kind, body) =
        send(serde_json::json!({"q": "Hi.", "source": "en", "target": "es"})).await;
    assert_eq!((status, kind.as_str()), (403, "application/problem+json"));
    assert_eq!(body["error"], "invalid API key");

    let (status, _, body) =
        send(serde_json::json!({"q": "Hi.", "source": "en", "target": "ja", "api_key": "s3cret"}))
            .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("\"ja\""),
        "{body}"
    );

    let (status, _, body) = send(serde_json::json!({"q": "a".repeat(2_001), "source": "en", "target": "es", "api_key": "s3cret"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = send(serde_json::json!({"q": vec!["a"; 33], "source": "en", "target": "es", "api_key": "s3cret"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = send(serde_json::json!({"text": "no q"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = send(serde_json::json!({"q": "<b>Hi</b>", "source": "en", "target": "es", "format": "html", "api_key": "s3cret"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = send(
        serde_json::json!({"q": "Hola.", "source": "es", "target": "es", "api_key": "s3cret"}),
    )
    .await;
    assert_eq!(
        (status, body["translatedText"].as_str()),
        (200, Some("Hola."))
    );
}
