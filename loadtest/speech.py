"""Synthetic product-pitch speech with known text, for the Whisper and live-caption benchmarks
(espeak-ng, sox and ffmpeg, Debian packages). `speech.py DIR` writes DIR/pitch.wav (16 kHz
mono), DIR/pitch.ogg (Opus in one 20 ms packet per page, for WHIP publishers), DIR/pitch.txt
(the words) and DIR/pitch.json (each phrase's text, start and end in seconds, and the clip's
length as its period).

`speech.py DIR --set loadtest/translate/pitch.tsv --lang es` speaks that set's column in that
language instead (espeak-ng's voice of it): DIR/es.wav and DIR/es.txt, for the speech
translation benchmark."""
import json
import subprocess
import sys
from pathlib import Path

PITCH = [
    "Welcome back to the live sale, everyone.",
    "This red rain jacket is fully waterproof and it folds into its own pocket.",
    "Today it is half price, only forty nine dollars.",
    "We have sizes small to extra large, in red, navy and black.",
    "Press the buy button under the video to order yours now.",
    "Shipping is free and returns are free for thirty days.",
    "There are only twelve left in stock, so do not wait too long.",
    "Thank you for watching, see you at the next drop.",
]
PAUSE = 1.5


def run(*args):
    subprocess.run(args, check=True)


def main(out: Path, pitch=PITCH, lang="en", name="pitch"):
    out.mkdir(parents=True, exist_ok=True)
    pause = out / "pause.wav"
    run("sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(pause), "trim", "0", str(PAUSE))
    parts, phrases, at = [str(pause)], [], PAUSE
    for i, text in enumerate(pitch):
        raw, wav = out / f"raw{i}.wav", out / f"p{i}.wav"
        run("espeak-ng", "-v", lang, "-s", "140", "-g", "3", "-w", str(raw), text)
        run("sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav))
        length = float(subprocess.run(["soxi", "-D", str(wav)], check=True, capture_output=True, text=True).stdout)
        phrases.append({"text": text, "start": round(at, 3), "end": round(at + length, 3)})
        at += length + PAUSE
        parts += [str(wav), str(pause)]
    run("sox", *parts, str(out / f"{name}.wav"))
    (out / f"{name}.txt").write_text("\n".join(pitch) + "\n")
    if name != "pitch":
        return
    (out / "pitch.json").write_text(json.dumps({"period": round(at, 3), "phrases": phrases}))
    run("ffmpeg", "-loglevel", "error", "-y", "-i", str(out / "pitch.wav"), "-ar", "48000", "-ac", "2",
        "-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20", "-page_duration", "20000", str(out / "pitch.ogg"))


def column(tsv: Path, lang: str):
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    at = rows[0].index(lang)
    return [row[at] for row in rows[1:]]


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[2] == "--set" and sys.argv[4] == "--lang":
        main(Path(sys.argv[1]), column(Path(sys.argv[3]), sys.argv[5]), sys.argv[5], sys.argv[5])
    else:
        main(Path(sys.argv[1]))
