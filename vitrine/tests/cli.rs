//! The command line and the server's HTTPS mode, as an operator uses them.

use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitrine::app;
use vitrine::config::Config;
use vitrine::store::Store;
use vitrine_core::Secret;

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

#[tokio::test]
async fn sellers_create_prints_one_json_line_with_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sellers", "create", "--name", "Acme Outlet", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let token = line["api_token"].as_str().unwrap();
    assert!(line["seller_id"].as_str().unwrap().starts_with("sl_"));

    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("vitrine.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    let seller = store
        .seller_by_token(&Secret::from_presented(token))
        .await
        .unwrap();
    assert_eq!(seller.unwrap().name, "Acme Outlet");
    // Stored hashed: the clear token appears nowhere in the database file.
    store.close().await;
    let db = std::fs::read(dir.path().join("vitrine.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    let bad = Command::new(BIN)
        .args(["sellers", "create", "--name", "  ", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name"));
}

#[tokio::test]
async fn serves_https_when_given_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display()),
        public_url: None,
        tls: Some((cert_path, key_path)),
        ice: Default::default(),
        redis_url: None,
        checkout: Default::default(),
        chat: Default::default(),
        hls: Default::default(),
        sandbox_latency: std::time::Duration::from_millis(20),
        demo: false,
    };
    let running = app::start(&config).await.unwrap();
    assert!(running.state.public_url().starts_with("https://"));

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // Plain HTTP on the HTTPS port is refused, not served.
    let mut plain = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    running.shutdown().await.unwrap();
}
