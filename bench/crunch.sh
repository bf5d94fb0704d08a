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
# Usage: bench/crunch.sh            (env: CRUNCHBOX_CORPUS, ROUNDS=5, CORE=0)
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${CRUNCHBOX_CORPUS:-../shared/corpus}
ROUNDS=${ROUNDS:-5}
CORE=${CORE:-0}

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

echo "corpus: $n images (${#png_inputs[@]} keep alpha), core $CORE, $ROUNDS rounds, load: $(cut -d' ' -f1-3 /proc/loadavg)"
best_cb=
best_vips=
for round in $(seq "$ROUNDS"); do
    t0=$(now); run_crunchbox; t1=$(now); run_vips; t2=$(now)
    cb=$((t1 - t0)); vips=$((t2 - t1))
    printf 'round %d: crunchbox %6.1f ms   vipsthumbnail %6.1f ms\n' "$round" "$(echo "$cb / 1000000" | bc -l)" \
        "$(echo "$vips / 1000000" | bc -l)"
    if [ -z "$best_cb" ] || [ "$cb" -lt "$best_cb" ]; then best_cb=$cb; fi
    if [ -z "$best_vips" ] || [ "$vips" -lt "$best_vips" ]; then best_vips=$vips; fi
done

cb_rate=$(echo "$n * 1000000000 / $best_cb" | bc -l)
vips_rate=$(echo "$n * 1000000000 / $best_vips" | bc -l)
printf 'crunchbox crunch:  %6.2f images/s  (best of %d)\n' "$cb_rate" "$ROUNDS"
printf 'vipsthumbnail x3:  %6.2f images/s  (%s)\n' "$vips_rate" "$(vips --version 2>/dev/null || echo libvips)"
printf 'ratio:             %6.2fx libvips\n' "$(echo "$cb_rate / $vips_rate" | bc -l)"
