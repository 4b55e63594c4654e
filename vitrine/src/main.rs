//! The `vitrine` command: `serve`, and operator commands such as `sellers create`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use vitrine::config::{Config, ServeArgs};
use vitrine::store::{MAX_NAME_CHARS, Store};
use vitrine::{app, telemetry};

#[derive(Parser)]
#[command(name = "vitrine", version, about = "Live-video commerce server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage sellers.
    Sellers {
        #[command(subcommand)]
        command: SellersCommand,
    },
    /// Subtitles tools.
    Subtitles {
        #[command(subcommand)]
        command: SubtitlesCommand,
    },
    /// Transcode a media file through the HLS ladder into a folder of static HLS (fMP4 segments,
    /// VOD playlists, master playlist) that any web server or CDN can serve.
    Transcode {
        /// Any file GStreamer demuxes and decodes (MP4, MKV, WebM, MOV, ...).
        input: PathBuf,
        /// Output folder (created; existing files of the same names are replaced).
        #[arg(long)]
        out: PathBuf,
        /// TOML file whose [hls] section sets the ladder, preset and segment lengths.
        #[arg(long, env = "VITRINE_CONFIG")]
        config: Option<PathBuf>,
        /// Print the summary as one JSON line (frames, seconds, renditions).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SubtitlesCommand {
    /// Convert a CTranslate2 Whisper model (a folder with model.bin and vocabulary.txt) into the
    /// ggml file whisper.cpp loads.
    ConvertModel {
        /// Folder holding the CTranslate2 model.
        model_dir: PathBuf,
        /// The ggml file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SellersCommand {
    /// Create a seller; prints {"seller_id", "api_token"} as one JSON line.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, env = "VITRINE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "VITRINE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "VITRINE_DATABASE_URL")]
        database_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    match Cli::parse().command {
        Command::Serve(args) => serve(Config::resolve(args)?).await,
        Command::Subtitles {
            command: SubtitlesCommand::ConvertModel { model_dir, out },
        } => convert_model(&model_dir, &out),
        Command::Transcode {
            input,
            out,
            config,
            json,
        } => {
            let config = Config::resolve(ServeArgs {
                config,
                ..Default::default()
            })?;
            transcode(&input, &out, &config, json).await
        }
        Command::Sellers {
            command:
                SellersCommand::Create {
                    name,
                    data_dir,
                    config,
                    database_url,
                },
        } => {
            let config = Config::resolve(ServeArgs {
                data_dir,
                config,
                database_url,
                ..Default::default()
            })?;
            let name = name.trim();
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                anyhow::bail!("--name must be 1 to {MAX_NAME_CHARS} characters");
            }
            std::fs::create_dir_all(&config.data_dir)?;
            let store = Store::connect(&config.database_url).await?;
            let (seller, token) = store.create_seller(name).await?;
            println!(
                "{}",
                serde_json::json!({ "seller_id": seller.id, "api_token": token.expose() })
            );
            store.close().await;
            Ok(())
        }
    }
}

/// `vitrine subtitles convert-model`: CTranslate2 Whisper weights to a ggml file, written to a
/// temporary name first so a failed conversion never leaves a half file under `out`.
fn convert_model(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let model = std::fs::read(dir.join("model.bin"))
        .with_context(|| format!("reading {}", dir.join("model.bin").display()))?;
    let vocabulary = std::fs::read_to_string(dir.join("vocabulary.txt"))
        .with_context(|| format!("reading {}", dir.join("vocabulary.txt").display()))?;
    let tmp = out.with_extension("part");
    let file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let converted = vitrine_subtitles::convert::convert(&model, &vocabulary, file);
    let converted = match converted {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("converting {}", dir.display()));
        }
    };
    std::fs::rename(&tmp, out)?;
    let h = converted.hparams;
    println!(
        "{}: {} tensors, {} layers x {} state, {} tokens",
        out.display(),
        converted.tensors,
        h.n_audio_layer,
        h.n_audio_state,
        h.n_vocab
    );
    Ok(())
}

/// `vitrine transcode`: the offline ladder with a progress bar.
async fn transcode(input: &Path, out: &Path, config: &Config, json: bool) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent}%  ETA {eta}",
        )
        .expect("a valid template"),
    );
    let summary = vitrine_transcode::offline::transcode_file(input, out, &config.hls, |p| {
        bar.set_position((p * 1000.0) as u64)
    })
    .await;
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("transcoding {}", input.display()))?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let names: Vec<&str> = summary.renditions.iter().map(|r| r.name.as_str()).collect();
        println!(
            "{}: {:.1} s of media in {:.1} s ({:.1} frames/s), renditions {}{}; master: {}",
            input.display(),
            summary.duration_s,
            summary.wall_s,
            summary.frames as f64 / summary.wall_s.max(1e-9),
            names.join(", "),
            if summary.audio { " + audio" } else { "" },
            out.join("master.m3u8").display()
        );
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = app::start(&config).await?;
    if config.demo {
        demo(&running).await.context("creating the demo stream")?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await
}

/// Creates the demo seller and a sample product once, and on every start a fresh demo stream
/// and a fresh seller token (the studio link carries both, so the demo needs no copying).
async fn demo(running: &app::Running) -> anyhow::Result<()> {
    const NAME: &str = "Demo Seller";
    let store = &running.state.store;
    let seller = match store.seller_by_name(NAME).await? {
        Some(id) => id,
        None => store.create_seller(NAME).await?.0.id,
    };
    let token = store.rotate_seller_token(&seller).await?;
    let checkout = &running.state.checkout;
    if checkout.products_of(&seller).await?.is_empty() {
        let price = vitrine_core::Money::new(4900, vitrine_core::Currency::parse("USD")?)?;
        checkout
            .create_product(
                &seller,
                vitrine_checkout::NewProduct {
                    sku: "JKT-RED-M".into(),
                    title: "Red jacket".into(),
                    description: "Demo product".into(),
                    image_url: None,
                    price,
                    stock: 50,
                },
            )
            .await?;
    }
    let (stream, key) = store.create_stream(&seller, "Demo stream").await?;
    let base = running.state.public_url();
    println!();
    println!("  Vitrine is running at {base}");
    println!(
        "  Studio (go live):  {base}/studio?stream={}#key={}&token={}",
        stream.id,
        key.expose(),
        token.expose()
    );
    println!("  Watch page:        {base}/watch/{}", stream.id);
    if running.state.hls.is_some() {
        println!("  HLS (live):        {base}/hls/{}/master.m3u8", stream.id);
        println!("  Replay (after):    {base}/vod/{}", stream.id);
    }
    println!(
        "  WHIP (OBS):        {base}/whip/{}  bearer token: {}",
        stream.id,
        key.expose()
    );
    println!(
        "  Seller API token:  {} (new on every start)",
        token.expose()
    );
    println!();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
