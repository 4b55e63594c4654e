#!/usr/bin/env bash
# Transcode speed: the same input through Vitrine's ladder (`vitrine transcode`: the live
# pipeline's rungs and packager) and through the ffmpeg command line producing the same ladder
# (same renditions, x264 preset, bitrates, GOP, no B-frames, fMP4 HLS), alternately (A B A B);
# then how many 720p ladders (720/480/360) the machine runs at once at real-time speed or better.
#   ROUNDS=2  MEDIA_SECONDS=60  PRESET=veryfast  LADDERS=1,2,3  OUT=loadtest/results/transcode
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-2}
len=${MEDIA_SECONDS:-60}
preset=${PRESET:-veryfast}
ladders=${LADDERS:-1,2,3}
out=${OUT:-loadtest/results/transcode}
mkdir -p "$(dirname "$out")"
rm -f "$out-1080p.jsonl" "$out-720p-ladders.jsonl"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Inputs: moving test patterns with a tone, H.264 + AAC in MP4, as a camera file would be.
make_input() { # $1 size, $2 file
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=$1:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$len" -c:v libx264 -preset fast -b:v 8M -g 60 -c:a aac -b:a 128k -shortest "$2"
}
make_input 1920x1080 "$dir/in1080.mp4"
make_input 1280x720 "$dir/in720.mp4"
frames=$((len * 30))

rungs_1080=(1080:5000 720:2800 480:1400 360:800)
rungs_720=(720:2800 480:1400 360:800)

write_config() { # $1 file, rungs...
  local file=$1; shift
  printf '[hls]\nx264_preset = "%s"\n' "$preset" >"$file"
  for r in "$@"; do
    printf '[[hls.renditions]]\nheight = %s\nbitrate_kbps = %s\n' "${r%%:*}" "${r##*:}" >>"$file"
  done
}
write_config "$dir/l1080.toml" "${rungs_1080[@]}"
write_config "$dir/l720.toml" "${rungs_720[@]}"

vitrine_ladder() { # $1 input, $2 config, $3 out
  target/release/vitrine transcode --json --config "$2" --out "$3" "$1" >/dev/null
}

ffmpeg_ladder() { # $1 input, $2 out, rungs...
  local input=$1 o=$2; shift 2
  local n=$# split="" maps=() rates=() streams=""
  local i=0
  for r in "$@"; do
    local h=${r%%:*} kbps=${r##*:}
    split+="[s$i]scale=-2:$h[v$i];"
    maps+=(-map "[v$i]")
    rates+=("-b:v:$i" "${kbps}k")
    streams+="v:$i "
    i=$((i + 1))
  done
  local outs=""
  for ((j = 0; j < n; j++)); do outs+="[s$j]"; done
  mkdir -p "$o"
  ffmpeg -v error -y -i "$input" -filter_complex "[0:v]split=$n$outs;${split%;}" "${maps[@]}" -map 0:a \
    -c:v libx264 -preset "$preset" -tune zerolatency -bf 0 -g 60 -keyint_min 60 -sc_threshold 0 \
    "${rates[@]}" -r 30 -c:a aac -b:a 128k -f hls -hls_time 2 -hls_playlist_type vod \
    -hls_segment_type fmp4 -var_stream_map "${streams}a:0" -master_pl_name master.m3u8 \
    -hls_segment_filename "$o/%v/s%d.m4s" "$o/%v/index.m3u8"
}

# row LABEL LADDERS FRAMES WALL CPU SLOWEST_WALL
row() {
  python3 - "$@" >>"$report.jsonl" <<'PY'
import json, sys
label, ladders, frames, wall, cpu, slowest, length = sys.argv[1:8]
wall, cpu, slowest, length = float(wall), float(cpu), float(slowest), float(length)
print(json.dumps({"label": label, "ladders": int(ladders), "frames_per_s": round(int(frames) / wall, 1),
                  "speed": round(length / slowest, 3), "cpu_per_s": round(cpu / wall, 3), "wall_s": round(wall, 2)}))
PY
  tail -1 "$report.jsonl"
}

# timed LABEL LADDERS INPUT_FRAMES COMMAND...: runs COMMAND LADDERS times at once; wall and CPU.
timed() {
  local label=$1 n=$2 f=$3; shift 3
  local start end cpu0 cpu1
  cpu0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  start=$(date +%s.%N)
  local jobs=()
  for ((k = 0; k < n; k++)); do
    ( s=$(date +%s.%N); "$@" "$k"; e=$(date +%s.%N); awk "BEGIN { print $e - $s }" >"$dir/wall.$k" ) &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  end=$(date +%s.%N)
  # Children's CPU (user + system) from /proc/self's cumulative child times.
  cpu1=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  local tck; tck=$(getconf CLK_TCK)
  local wall; wall=$(awk "BEGIN { print $end - $start }")
  local cpu; cpu=$(awk "BEGIN { print ($cpu1 - $cpu0) / $tck }")
  local slowest; slowest=$(sort -n "$dir"/wall.* | tail -1)
  rm -f "$dir"/wall.*
  row "$label" "$n" "$((f * n))" "$wall" "$cpu" "$slowest" "$len"
}

run_vitrine_1080() { vitrine_ladder "$dir/in1080.mp4" "$dir/l1080.toml" "$dir/v1080-$1"; }
run_ffmpeg_1080() { ffmpeg_ladder "$dir/in1080.mp4" "$dir/f1080-$1" "${rungs_1080[@]}"; }
run_vitrine_720() { vitrine_ladder "$dir/in720.mp4" "$dir/l720.toml" "$dir/v720-$1"; }
run_ffmpeg_720() { ffmpeg_ladder "$dir/in720.mp4" "$dir/f720-$1" "${rungs_720[@]}"; }

echo "== one 1080p ladder (1080/720/480/360), $len s, preset $preset, $rounds rounds"
report=$out-1080p
for ((r = 0; r < rounds; r++)); do
  timed vitrine 1 "$frames" run_vitrine_1080
  timed ffmpeg 1 "$frames" run_ffmpeg_1080
done
echo "== concurrent 720p ladders (720/480/360): $ladders"
report=$out-720p-ladders
IFS=, read -ra counts <<<"$ladders"
for n in "${counts[@]}"; do
  timed vitrine "$n" "$frames" run_vitrine_720
  timed ffmpeg "$n" "$frames" run_ffmpeg_720
done
for r in "$out-1080p" "$out-720p-ladders"; do
  target/release/vitrine-loadtest chart --kind transcode --input "$r.jsonl" --png "$r.png"
done
