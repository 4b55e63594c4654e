//! The `vitrine` command: `serve`, and operator commands such as `sellers create`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
