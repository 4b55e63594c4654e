//! `translate`: the quality of a translation service (LibreTranslate's HTTP API) on a small
//! parallel set of product-pitch sentences (`loadtest/translate/pitch.tsv`: English, then one
//! column per other language): corpus chrF2 per direction and the time per sentence. Any text
//! backend Vitrine ships is measured through the same API shape: from English into each other
//! column, and from each other column into English.
//!
//! `translate-row`: the quality of one speech translation (the set's sentences spoken in one
//! language, transcribed and translated into another: Whisper's translate task, or Whisper
//! then a text backend), scored on the whole text, since cues need not fall on sentence
//! boundaries.

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

#[derive(clap::Args, Clone)]
pub struct TranslateRowArgs {
    /// Label of the row (the engine and path measured).
    #[arg(long)]
    pub label: String,
    #[arg(long, default_value = "loadtest/translate/pitch.tsv")]
    pub set: std::path::PathBuf,
    /// The spoken language (a column of the set).
    #[arg(long)]
    pub source: String,
    /// The language translated into (a column of the set).
    #[arg(long)]
    pub target: String,
    /// One JSON line: `vitrine subtitles transcribe --json` (`text`, `translations`) or the
    /// peer's (`text` in the target language, `transcribe_seconds`).
    #[arg(long)]
    pub result: String,
    /// Whether `text` of the result is already the translation (the peer's translate task).
    #[arg(long)]
    pub text_is_translation: bool,
    #[arg(long, default_value_t = 1)]
    pub round: usize,
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Directions in a fixed order, the x axis of the chart.
const DIRECTIONS: [&str; 6] = ["en>es", "en>de", "es>en", "de>en", "es>de", "de>es"];

fn direction(source: &str, target: &str) -> (String, usize) {
    let name = format!("{source}>{target}");
    let at = DIRECTIONS
        .iter()
        .position(|d| *d == name)
        .map_or(0, |i| i + 1);
    (name, at)
}

#[derive(serde::Serialize)]
struct Row {
    label: String,
    /// `text` (sentences given as text) or `speech` (spoken, transcribed, translated).
    input: &'static str,
    direction: String,
    /// The direction's place in [`DIRECTIONS`], from 1.
    direction_no: usize,
    sentences: usize,
    chrf: f64,
    /// Speech rows: chrF2 of the transcript against the spoken sentences (how much of the
    /// loss is the recognition's).
    #[serde(skip_serializing_if = "Option::is_none")]
    source_chrf: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_per_sentence: Option<f64>,
    round: usize,
}

fn read_set(path: &std::path::Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines
        .next()
        .context("empty set")?
        .split('\t')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let rows = lines
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    if let Some(bad) = rows.iter().position(|r| r.len() != header.len()) {
        anyhow::bail!(
            "{}: line {} has {} columns",
            path.display(),
            bad + 2,
            rows[bad].len()
        );
    }
    Ok((header, rows))
}

/// `translate-row`.
pub fn row(args: &TranslateRowArgs) -> anyhow::Result<()> {
    let (header, rows) = read_set(&args.set)?;
    let column = |lang: &str| -> anyhow::Result<String> {
        let at = header
            .iter()
            .position(|h| h == lang)
            .with_context(|| format!("no {lang} column in {}", args.set.display()))?;
        Ok(rows
            .iter()
            .map(|r| r[at].as_str())
            .collect::<Vec<_>>()
            .join(" "))
    };
    let result: serde_json::Value =
        serde_json::from_str(&args.result).context("the result is not JSON")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let (transcript, translation) = if args.text_is_translation {
        (None, text(&result["text"]))
    } else {
        (
            Some(text(&result["text"])),
            text(&result["translations"][&args.target]),
        )
    };
    let (direction, direction_no) = direction(&args.source, &args.target);
    let row = Row {
        label: args.label.clone(),
        input: "speech",
        direction,
        direction_no,
        sentences: rows.len(),
        chrf: crate::chrf::chrf(&[column(&args.target)?], &[translation]),
        source_chrf: match transcript {
            Some(t) => Some(crate::chrf::chrf(&[column(&args.source)?], &[t])),
            None => None,
        },
        seconds_per_sentence: None,
        round: args.round,
    };
    append(&args.out, &row)
}

pub async fn run(args: &TranslateArgs) -> anyhow::Result<()> {
    let (header, rows) = read_set(&args.set)?;
    let http = reqwest::Client::new();
    // From the first column into each other one, and back.
    let pairs = (1..header.len()).flat_map(|c| [(0, c), (c, 0)]);
    for (from, to) in pairs {
        let (mut references, mut hypotheses) = (Vec::new(), Vec::new());
        let started = std::time::Instant::now();
        for row in &rows {
            let reply: serde_json::Value = http
                .post(format!("{}/translate", args.url.trim_end_matches('/')))
                .json(&serde_json::json!({
                    "q": row[from], "source": header[from], "target": header[to], "format": "text"
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
            references.push(row[to].clone());
        }
        let (direction, direction_no) = direction(&header[from], &header[to]);
        let row = Row {
            label: args.label.clone(),
            input: "text",
            direction,
            direction_no,
            sentences: rows.len(),
            chrf: crate::chrf::chrf(&references, &hypotheses),
            source_chrf: None,
            seconds_per_sentence: Some(started.elapsed().as_secs_f64() / rows.len().max(1) as f64),
            round: 1,
        };
        append(&args.out, &row)?;
    }
    Ok(())
}
