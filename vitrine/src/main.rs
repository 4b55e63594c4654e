//! The `vitrine` command: `serve`, and operator commands such as `sellers create`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use vitrine::config::{Config, ServeArgs};
use vitrine::store::Store;
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
    Serve(Box<ServeArgs>),
    /// Manage sellers.
    Sellers {
        #[command(subcommand)]
        command: SellersCommand,
    },
    /// Manage the platform's operators (the cluster view, draining nodes).
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
    },
    /// Manage third-party apps (operator actions).
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
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
    /// Print the OpenAPI 3.1 document the server publishes at /api/openapi.json (for client
    /// generators and linters, without a running server).
    Openapi,
    /// Drain a running cluster node: it leaves selection, sends its publishers, viewers and
    /// chat members to other nodes, finishes requests in flight, then exits.
    Drain {
        /// The node's HTTP base URL (its advertise URL).
        #[arg(long)]
        url: String,
        /// The cluster's secret file (the operator's credential).
        #[arg(long, env = "VITRINE_CLUSTER_SECRET_FILE")]
        cluster_secret_file: PathBuf,
        /// Wait until the node has stopped answering.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WeightsArg {
    F16,
    #[value(name = "q8_0")]
    Q8_0,
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
        /// How weight matrices are stored: f16 (exact) or q8_0 (8-bit blocks, as whisper.cpp's
        /// quantizer writes them: half the memory traffic).
        #[arg(long, value_enum, default_value_t = WeightsArg::F16)]
        weights: WeightsArg,
    },
    /// Transcribe any media file into WebVTT and SRT (INPUT.vtt, INPUT.srt; INPUT.en.vtt and
    /// INPUT.en.srt with --translate en), with a progress bar.
    Transcribe {
        /// Any file with audio that GStreamer demuxes and decodes.
        input: PathBuf,
        /// A ggml Whisper model; default: DATA_DIR/models/ggml-tiny.en-q8_0.bin, converted from the
        /// CTranslate2 model the setup script fetched when missing.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Spoken language: a Whisper code (en, es, de, ...) or auto (multilingual models).
        #[arg(long, default_value = "auto")]
        language: String,
        /// Also write translations (INPUT.es.vtt, ...): `en` from another language is
        /// Whisper's own translation task (multilingual models); any other goes through the
        /// --libretranslate service.
        #[arg(long, value_delimiter = ',')]
        translate: Vec<String>,
        /// A LibreTranslate-compatible service (http://host:port) for --translate.
        #[arg(long, env = "VITRINE_LIBRETRANSLATE_URL")]
        libretranslate: Option<String>,
        /// CPU threads for Whisper (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print one JSON line instead of the file names: the audio and transcription seconds
        /// (audio decoding and model loading not counted) and the text.
        #[arg(long)]
        json: bool,
        /// Folder for the subtitle files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, env = "VITRINE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SellersCommand {
    /// Create a seller; prints {"seller_id", "api_token"} as one JSON line.
    Create(CreateArgs),
}

#[derive(Subcommand)]
enum OperatorsCommand {
    /// Create an operator; prints {"operator_id", "token"} as one JSON line.
    Create(CreateArgs),
}

#[derive(Subcommand)]
enum AppsCommand {
    /// Move an app to another rate-limit tier (one of the configured `[rate_limits]` tiers).
    SetTier {
        /// The app's id (its OAuth2 client_id).
        app: String,
        tier: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where a command that works on the database finds it, as `serve` would.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long, env = "VITRINE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "VITRINE_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "VITRINE_DATABASE_URL")]
    database_url: Option<String>,
    /// The region whose database to use, in a deployment of several (`[regions]`).
    #[arg(long, env = "VITRINE_REGION")]
    region: Option<String>,
}

impl StoreArgs {
    /// The configuration `serve` would resolve from these (and the file and environment).
    fn resolve(self) -> anyhow::Result<Config> {
        Config::resolve(ServeArgs {
            data_dir: self.data_dir,
            config: self.config,
            database_url: self.database_url,
            cluster: vitrine::cluster::ClusterArgs {
                region: self.region,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// A seller or operator to create.
#[derive(clap::Args)]
struct CreateArgs {
    #[arg(long)]
    name: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    match Cli::parse().command {
        Command::Serve(args) => serve(Config::resolve(*args)?).await,
        Command::Subtitles {
            command:
                SubtitlesCommand::ConvertModel {
                    model_dir,
                    out,
                    weights,
                },
        } => {
            let weights = match weights {
                WeightsArg::F16 => vitrine_subtitles::convert::Weights::F16,
                WeightsArg::Q8_0 => vitrine_subtitles::convert::Weights::Q8_0,
            };
            println!(
                "{}",
                vitrine::models::convert_model(&model_dir, &out, weights)?
            );
            Ok(())
        }
        Command::Subtitles {
            command:
                SubtitlesCommand::Transcribe {
                    input,
                    model,
                    language,
                    translate,
                    libretranslate,
                    threads,
                    json,
                    out,
                    data_dir,
                },
        } => {
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("./data"));
            let model = match model {
                Some(m) => m,
                None => vitrine::models::default_model(&data_dir)?,
            };
            let translator = libretranslate
                .map(|url| vitrine_subtitles::translate::LibreTranslate::new(&url, None))
                .transpose()?;
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let job = TranscribeJob {
                model,
                language,
                translate,
                translator,
                threads: threads.clamp(1, 256) as i32,
                json,
                out,
            };
            tokio::task::block_in_place(|| transcribe(&input, &job))
        }
        Command::Openapi => {
            println!("{}", vitrine::openapi::document());
            Ok(())
        }
        Command::Drain {
            url,
            cluster_secret_file,
            wait,
        } => vitrine::cluster::drain_command(&url, &cluster_secret_file, wait).await,
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
            command: SellersCommand::Create(CreateArgs { name, store }),
        } => {
            let config = store.resolve()?;
            let name = vitrine::store::checked_name(&name)?;
            std::fs::create_dir_all(&config.data_dir)?;
            let home = config.regions.as_ref().map(|r| r.here.clone());
            let store = Store::connect(&config.database_url).await?.with_home(home);
            let (seller, token) = store.create_seller(name).await?;
            println!(
                "{}",
                serde_json::json!({ "seller_id": seller.id, "api_token": token.expose() })
            );
            store.close().await;
            Ok(())
        }
        Command::Operators {
            command: OperatorsCommand::Create(CreateArgs { name, store }),
        } => {
            let config = store.resolve()?;
            std::fs::create_dir_all(&config.data_dir)?;
            vitrine::operators::create_command(&config.database_url, &name).await
        }
        Command::Apps {
            command: AppsCommand::SetTier { app, tier, store },
        } => {
            let config = store.resolve()?;
            if !config.rate_limits.contains(&tier) {
                let known: Vec<_> = config.rate_limits.names().collect();
                anyhow::bail!("no tier {tier:?}; the configured tiers are {known:?}");
            }
            let app = vitrine_core::AppId::parse(&app).context("not an app id")?;
            let store = Store::connect(&config.database_url).await?;
            let platform = vitrine_platform::Platform::new(store.pool().clone());
            platform.set_tier(&app, &tier).await?;
            println!("{}", serde_json::json!({ "app_id": app, "tier": tier }));
            store.close().await;
            Ok(())
        }
    }
}

/// What `vitrine subtitles transcribe` was asked.
struct TranscribeJob {
    model: PathBuf,
    language: String,
    translate: Vec<String>,
    translator: Option<vitrine_subtitles::translate::LibreTranslate>,
    threads: i32,
    json: bool,
    out: PathBuf,
}

/// `vitrine subtitles transcribe`: decode, transcribe (and translate), write WebVTT and SRT.
fn transcribe(input: &Path, job: &TranscribeJob) -> anyhow::Result<()> {
    use vitrine_subtitles::transcriber::{Request, Transcriber};
    use vitrine_subtitles::translate::Translator;
    let (language, translate, translator, out) = (
        job.language.as_str(),
        &job.translate,
        &job.translator,
        &job.out,
    );
    let transcriber = Transcriber::open(&job.model)?;
    // English from another language is Whisper's own task; the rest needs a translator.
    let by_whisper = |l: &str| l == "en" && language != "en" && transcriber.multilingual();
    if !transcriber.multilingual() && translate.iter().any(|l| l == "en") {
        anyhow::bail!("this model is English-only: its transcription is English already");
    }
    if let Some(other) = translate.iter().find(|l| !by_whisper(l)) {
        if translator.is_none() {
            anyhow::bail!(
                "no translator for {other:?}: pass --libretranslate URL (Whisper itself only \
                 translates other languages into English, with a multilingual model)"
            );
        }
        if language == "auto" {
            anyhow::bail!("translating into {other:?} needs the spoken language: pass --language");
        }
    }
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {percent}%",
        )
        .expect("a valid template"),
    );
    bar.set_message("decoding");
    let samples =
        vitrine_subtitles::audio::decode(input, |p| bar.set_position((p * 100.0) as u64))?;
    let threads = job.threads;
    let mut timed = std::time::Duration::ZERO;
    let mut spoken = String::new();
    let stem = input
        .file_stem()
        .map_or_else(|| "subtitles".into(), |s| s.to_string_lossy().into_owned());
    std::fs::create_dir_all(out)?;
    let mut jobs = vec![(false, String::new())];
    jobs.extend(
        translate
            .iter()
            .filter(|l| by_whisper(l))
            .map(|l| (true, format!(".{l}"))),
    );
    let mut written = Vec::new();
    let mut source_cues = Vec::new();
    // Each translation's text, for --json (quality benchmarks score it).
    let mut translations = std::collections::BTreeMap::new();
    let joined = |cues: &[vitrine_subtitles::cue::Cue]| {
        cues.iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let write = |suffix: &str, cues: &[vitrine_subtitles::cue::Cue], written: &mut Vec<PathBuf>| {
        for (ext, text) in [
            ("vtt", vitrine_subtitles::cue::to_webvtt(cues)),
            ("srt", vitrine_subtitles::cue::to_srt(cues)),
        ] {
            let path = out.join(format!("{stem}{suffix}.{ext}"));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        anyhow::Ok(())
    };
    for (translate_to_english, suffix) in jobs {
        bar.set_message(if translate_to_english {
            "translating"
        } else {
            "transcribing"
        });
        bar.set_position(0);
        let request = Request {
            language: (language != "auto").then(|| language.to_owned()),
            translate_to_english,
            threads,
            // Speech regions are seconds long: the encoder is fitted to each.
            fit_audio_context: true,
            no_fallback: false,
        };
        // Only where the VAD hears speech: Whisper invents text in silence.
        let vad = vitrine_subtitles::vad::VadConfig::default();
        let started = std::time::Instant::now();
        let cues = transcriber.transcribe_speech(&samples, &request, &vad, |f| {
            bar.set_position((f * 100.0) as u64)
        })?;
        write(&suffix, &cues, &mut written)?;
        if translate_to_english {
            translations.insert("en".to_owned(), joined(&cues));
        } else {
            timed = started.elapsed();
            spoken = joined(&cues);
            source_cues = cues;
        }
    }
    if let Some(translator) = translator {
        let runtime = tokio::runtime::Handle::current();
        for target in translate.iter().filter(|l| !by_whisper(l)) {
            bar.set_message(format!("to {target}"));
            bar.set_position(0);
            let mut cues = Vec::with_capacity(source_cues.len());
            for (i, cue) in source_cues.iter().enumerate() {
                let text = runtime
                    .block_on(translator.translate(&cue.text, language, target))
                    .with_context(|| format!("translating into {target}"))?;
                cues.push(vitrine_subtitles::cue::Cue {
                    text,
                    ..cue.clone()
                });
                bar.set_position(((i + 1) * 100 / source_cues.len().max(1)) as u64);
            }
            write(&format!(".{target}"), &cues, &mut written)?;
            translations.insert(target.clone(), joined(&cues));
        }
    }
    bar.finish_and_clear();
    if job.json {
        let rate = f64::from(vitrine_subtitles::audio::SAMPLE_RATE);
        println!(
            "{}",
            serde_json::json!({
                "audio_seconds": samples.len() as f64 / rate,
                "transcribe_seconds": timed.as_secs_f64(),
                "text": spoken,
                "translations": translations,
                "files": written,
            })
        );
        return Ok(());
    }
    for path in written {
        println!("{}", path.display());
    }
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
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = running.drain_requested.cancelled() => {}
    }
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
    if checkout.catalog().products_of(&seller).await?.is_empty() {
        let price = vitrine_core::Money::new(4900, vitrine_core::Currency::parse("USD")?)?;
        checkout
            .catalog()
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
