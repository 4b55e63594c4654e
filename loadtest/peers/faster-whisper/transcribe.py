"""faster-whisper on one clip, timed the way `vitrine subtitles transcribe --json` times itself:
the audio is decoded to 16 kHz first (not timed), then the transcription is timed, voice
activity detection included. Prints one JSON line."""
import argparse
import json
import time

from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

p = argparse.ArgumentParser()
p.add_argument("--model", required=True, help="CTranslate2 Whisper model folder")
p.add_argument("--clip", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--compute-type", default="int8")
p.add_argument("--language", default="en")
p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
a = p.parse_args()

audio = decode_audio(a.clip, sampling_rate=16000)
started = time.perf_counter()
model = WhisperModel(a.model, device="cpu", compute_type=a.compute_type, cpu_threads=a.threads, num_workers=1)
loaded = time.perf_counter()
# Greedy decoding (beam 1) and voice activity filtering, as Vitrine transcribes.
segments, _ = model.transcribe(audio, language=a.language, beam_size=1, vad_filter=True, task=a.task)
text = " ".join(s.text.strip() for s in segments)
done = time.perf_counter()
print(json.dumps({
    "audio_seconds": len(audio) / 16000,
    "load_seconds": loaded - started,
    "transcribe_seconds": done - loaded,
    "text": text,
}))
