//! `translate`: the quality of a translation service (LibreTranslate's HTTP API) on a small
//! parallel set of product-pitch sentences (`loadtest/translate/pitch.tsv`: English, then one
//! column per target language): corpus chrF2 per target and the time per sentence. Any backend
//! Vitrine ships is measured through the same API shape.

use crate::report::append;
use anyhow::Context;

#[derive(clap::Args, Clone)]
pub struct TranslateArgs {
    /// A LibreTranslate-compatible service.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "loadtest/translate/pitch.tsv")]
    pub set: std::path::PathBuf,
    /// Label of the rows (the backend measured).
    #[arg(long)]
    pub label: String,
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(serde::Serialize)]
struct Row {
    label: String,
    target: String,
    sentences: usize,
    chrf: f64,
    seconds_per_sentence: f64,
}

pub async fn run(args: &TranslateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.set)
        .with_context(|| format!("reading {}", args.set.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty set")?.split('\t').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    let http = reqwest::Client::new();
    for (column, target) in header.iter().enumerate().skip(1) {
        let (mut references, mut hypotheses) = (Vec::new(), Vec::new());
        let started = std::time::Instant::now();
        for row in &rows {
            let reply: serde_json::Value = http
                .post(format!("{}/translate", args.url.trim_end_matches('/')))
                .json(&serde_json::json!({
                    "q": row[0], "source": header[0], "target": target, "format": "text"
                }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            hypotheses.push(
                reply["translatedText"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            references.push(row[column].to_owned());
        }
        let row = Row {
            label: args.label.clone(),
            target: (*target).to_owned(),
            sentences: rows.len(),
            chrf: crate::chrf::chrf(&references, &hypotheses),
            seconds_per_sentence: started.elapsed().as_secs_f64() / rows.len().max(1) as f64,
        };
        println!("{}", serde_json::to_string(&row)?);
        append(&args.out, &row)?;
    }
    Ok(())
}
