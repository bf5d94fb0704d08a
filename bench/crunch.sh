#!/usr/bin/env bash
# Crunch throughput against libvips, on one core, over the shared corpus.
#
# For every image both tools make the same three variants (600, 200 and
# 100 px boxes, JPEG q85, metadata stripped; PNG where crunchbox keeps
# transparency). crunchbox does it in one `crunchbox crunch` run; libvips
# with one `vipsthumbnail` run per box size over all files (each run uses
# libvips' shrink-on-load from the original, its fastest mode).
# Both are pinned to one core (taskset) with libvips' thread pool at 1.
# Each tool runs ROUNDS times, alternating; the best round counts.
#
# vipsthumbnail decodes each original three times (once per box), while
# crunchbox decodes once and makes the two small variants from the large
# one. So a second libvips reference does exactly crunchbox's steps, through
# pyvips in one process: thumbnail to 600 (shrink-on-load), then 200 and
# 100 from that in-memory 600 (lanczos3 both sides), the same encodes. Its
# time is taken inside Python, so interpreter start-up is not charged to it.
# Set CASCADE=0 to skip it (it needs pyvips, installed into target/bench-venv).
#
# Usage: bench/crunch.sh            (env: CRUNCHBOX_CORPUS, ROUNDS=5, CORE=0, CASCADE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${CRUNCHBOX_CORPUS:-../shared/corpus}
ROUNDS=${ROUNDS:-5}
CORE=${CORE:-0}
CASCADE=${CASCADE:-1}

if ! command -v vipsthumbnail >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libvips-tools >/dev/null
fi
CARGO_INCREMENTAL=1 cargo build --release --bin crunchbox 2>&1 | tail -n 1

shopt -s nullglob
files=("$CORPUS"/*.jpg "$CORPUS"/*.jpeg "$CORPUS"/*.png "$CORPUS"/*.gif "$CORPUS"/*.webp)
n=${#files[@]}
if [ "$n" -eq 0 ]; then
    echo "no images in $CORPUS (set CRUNCHBOX_CORPUS)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$PWD/target/release/crunchbox

now() { date +%s%N; }

run_crunchbox() {
    rm -rf "$tmp/cb" && mkdir -p "$tmp/cb"
    taskset -c "$CORE" "$bin" crunch "${files[@]}" --out "$tmp/cb" >/dev/null
}

# vipsthumbnail writes one format per run, so inputs are grouped by the
# output format crunchbox chose for them (JPEG, or PNG for transparency).
run_vips() {
    rm -rf "$tmp/vips" && mkdir -p "$tmp/vips"
    local box suffix
    for box in 600 200 100; do
        case $box in 600) suffix=_large ;; 200) suffix= ;; 100) suffix=_small ;; esac
        if [ ${#jpeg_inputs[@]} -gt 0 ]; then
            VIPS_CONCURRENCY=1 taskset -c "$CORE" vipsthumbnail "${jpeg_inputs[@]}" -s "$box" \
                -o "$tmp/vips/%s$suffix.jpg[Q=85,strip]"
        fi
        if [ ${#png_inputs[@]} -gt 0 ]; then
            VIPS_CONCURRENCY=1 taskset -c "$CORE" vipsthumbnail "${png_inputs[@]}" -s "$box" \
                -o "$tmp/vips/%s$suffix.png[strip]"
        fi
    done
}

# libvips doing crunchbox's own cascade; prints its elapsed nanoseconds.
venv=$PWD/target/bench-venv
if [ "$CASCADE" = 1 ] && ! "$venv/bin/python" -c 'import pyvips' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q pyvips >/dev/null
fi
run_vips_cascade() {
    rm -rf "$tmp/vc" && mkdir -p "$tmp/vc"
    VIPS_CONCURRENCY=1 taskset -c "$CORE" "$venv/bin/python" - "$tmp/vc" "${jpeg_inputs[@]/#/jpg:}" \
        "${png_inputs[@]/#/png:}" <<'PY'
import os, sys, time
import pyvips
pyvips.cache_set_max(0)
out = sys.argv[1]
started = time.perf_counter_ns()
for arg in sys.argv[2:]:
    kind, path = arg.split(":", 1)
    stem = os.path.splitext(os.path.basename(path))[0]
    large = pyvips.Image.thumbnail(path, 600, size="down").copy_memory()
    for suffix, img in (("_large", large), ("", large.thumbnail_image(200, size="down")),
                        ("_small", large.thumbnail_image(100, size="down"))):
        if kind == "jpg":
            img.jpegsave(f"{out}/{stem}{suffix}.jpg", Q=85, strip=True, subsample_mode="on")
        else:
            img.pngsave(f"{out}/{stem}{suffix}.png", strip=True)
print(time.perf_counter_ns() - started)
PY
}

run_crunchbox
jpeg_inputs=()
png_inputs=()
for f in "${files[@]}"; do
    stem=$(basename "${f%.*}")
    if [ -e "$tmp/cb/$stem.png" ]; then png_inputs+=("$f"); else jpeg_inputs+=("$f"); fi
done
run_vips
if [ "$(ls "$tmp/vips" | wc -l)" -ne "$(ls "$tmp/cb" | wc -l)" ]; then
    echo "the two tools wrote different numbers of files" >&2
    exit 1
fi
if [ "$CASCADE" = 1 ]; then
    run_vips_cascade >/dev/null
    if [ "$(ls "$tmp/vc" | wc -l)" -ne "$(ls "$tmp/cb" | wc -l)" ]; then
        echo "the pyvips cascade wrote a different number of files" >&2
        exit 1
    fi
fi

echo "corpus: $n images (${#png_inputs[@]} keep alpha), core $CORE, $ROUNDS rounds, load: $(cut -d' ' -f1-3 /proc/loadavg)"
best_cb=
best_vips=
best_vc=
ms() { echo "$1 / 1000000" | bc -l; }
for round in $(seq "$ROUNDS"); do
    t0=$(now); run_crunchbox; t1=$(now); run_vips; t2=$(now)
    cb=$((t1 - t0)); vips=$((t2 - t1))
    line=$(printf 'round %d: crunchbox %6.1f ms   vipsthumbnail %6.1f ms' "$round" "$(ms "$cb")" "$(ms "$vips")")
    if [ "$CASCADE" = 1 ]; then
        vc=$(run_vips_cascade)
        line+=$(printf '   pyvips cascade %6.1f ms' "$(ms "$vc")")
        if [ -z "$best_vc" ] || [ "$vc" -lt "$best_vc" ]; then best_vc=$vc; fi
    fi
    echo "$line   (load $(cut -d' ' -f1 /proc/loadavg))"
    if [ -z "$best_cb" ] || [ "$cb" -lt "$best_cb" ]; then best_cb=$cb; fi
    if [ -z "$best_vips" ] || [ "$vips" -lt "$best_vips" ]; then best_vips=$vips; fi
done

cb_rate=$(echo "$n * 1000000000 / $best_cb" | bc -l)
vips_rate=$(echo "$n * 1000000000 / $best_vips" | bc -l)
printf 'crunchbox crunch:  %6.2f images/s  (best of %d)\n' "$cb_rate" "$ROUNDS"
printf 'vipsthumbnail x3:  %6.2f images/s  (%s)\n' "$vips_rate" "$(vips --version 2>/dev/null || echo libvips)"
printf 'ratio:             %6.2fx libvips (vipsthumbnail, the issue-4 reference)\n' "$(echo "$cb_rate / $vips_rate" | bc -l)"
if [ "$CASCADE" = 1 ]; then
    vc_rate=$(echo "$n * 1000000000 / $best_vc" | bc -l)
    printf 'pyvips cascade:    %6.2f images/s  (one decode, 200/100 from the 600, like crunchbox)\n' "$vc_rate"
    printf 'ratio:             %6.2fx libvips cascade\n' "$(echo "$cb_rate / $vc_rate" | bc -l)"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
