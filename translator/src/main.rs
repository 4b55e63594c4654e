//! `vitrine-translator`: serves a local GGUF language model as a LibreTranslate-compatible
//! translation service for the Vitrine server's captions (`[subtitles] libretranslate_url`),
//! or translates one text from the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use vitrine_translator::http::{Access, router};
use vitrine_translator::languages::language;
use vitrine_translator::metrics::TranslatorMetrics;
use vitrine_translator::{Engine, Translator};

#[derive(Parser)]
#[command(
    name = "vitrine-translator",
    version,
    about = "Local caption translation over LibreTranslate's API"
)]
struct Cli {
    /// GGUF model (default: the Gemma 3 270M file the setup script caches).
    #[arg(long, env = "VITRINE_TRANSLATOR_MODEL", global = true)]
    model: Option<PathBuf>,
    /// CPU threads per worker.
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `POST /translate` and `GET /languages` (LibreTranslate's shapes), `/healthz`,
    /// `/metrics`.
    Serve {
        /// Address to listen on (loopback by default: the Vitrine server is its client).
        #[arg(long, default_value = "127.0.0.1:5005")]
        listen: std::net::SocketAddr,
        /// Translations run at once, each with its own context.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Require this `api_key` in requests (read from the environment so that it stays out
        /// of process listings).
        #[arg(long = "api-key-env", default_value = "VITRINE_TRANSLATOR_API_KEY")]
        api_key_env: String,
    },
    /// Translate one text and print it.
    Translate {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        text: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let path = cli.model.unwrap_or_else(vitrine_translator::default_model);
    let engine = Arc::new(
        Engine::load(&path, cli.threads).with_context(|| format!("loading {}", path.display()))?,
    );
    match cli.command {
        Command::Translate { from, to, text } => {
            let from =
                language(&from).with_context(|| format!("language {from:?} not supported"))?;
            let to = language(&to).with_context(|| format!("language {to:?} not supported"))?;
            let engine = engine.clone();
            let out =
                tokio::task::spawn_blocking(move || engine.session()?.translate(&text, from, to))
                    .await??;
            println!("{}", out.text);
        }
        Command::Serve {
            listen,
            workers,
            api_key_env,
        } => {
            let metrics = TranslatorMetrics::default();
            let mut registry = prometheus_client::registry::Registry::default();
            metrics.register(&mut registry);
            let translator = Translator::start(engine, workers, metrics)?;
            let access = match std::env::var(&api_key_env) {
                Ok(key) if !key.is_empty() => Access::with_key(&key),
                _ => Access::open(),
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            tracing::info!(%listen, model = %path.display(), workers, "translator ready");
            axum::serve(listener, router(translator, access, registry))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
