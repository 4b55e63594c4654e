//! Logging: `tracing` with an env filter (`RUST_LOG`), and the `log` records of the WebRTC stack
//! bridged in, because that stack reports why it dropped a packet only through `log`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,webrtc=warn,rtc=warn,rtc_ice=warn,rtc_dtls=warn,sqlx=warn,whisper_rs=warn",
        )
    });
    let _ = tracing_log::LogTracer::init();
    // Logs go to stderr: standard output is for what a command prints (URLs, JSON lines).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
