#!/usr/bin/env bash
# `make experiments`: the paper's suite on ../shared/data (METHOD §2-§4), resumable.
#
# Parts (PARTS, default all, in this order):
#   flickr8k     MiniLM captions vs EfficientNet-lite0 images, the reference embeddings
#   crossdomain  seeds from one data set, queries from the other: Flickr8k <-> synthetic scenes
#                (fastcka.scenes, embedded here with the same two encoders), both ways
#   multi30k     the 937 Multi30K images vs their caption in en/de/fr/cs (e5-small-multilingual;
#                MiniLM for en as the reference)
#   xtd10        caption <-> caption across languages: English captions (MiniLM) vs the same
#                captions in another language (e5-small-multilingual), XTD10 + MIC + STAIR
#   classify     Fashion-MNIST classification by matching (`fastcka classify`, helper 13c)
# Every grid is `fastcka eval` with METHODS (default all), SEEDS seed counts (default 6), DRAWS
# query draws (3), QUERIES queries (500), DIRECTION (both), FAQ with N_INIT restarts (the paper's
# 500).  Each cell is journaled: a rerun after a
# kill resumes; a table already complete for the same settings is kept.  Embeddings are computed
# once into EXP_DIR (build/experiments, outside git) and reused.
set -euo pipefail
F=${FASTCKA:-.venv/bin/fastcka}
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data}
B=${EXP_DIR:-build/experiments}
R=${RESULTS:-docs/results}
N_INIT=${N_INIT:-500}
SEEDS=${SEEDS:-10,20,40,80,160,320}
DRAWS=${DRAWS:-3}
QUERIES=${QUERIES:-500}
METHODS=${METHODS:-faq:rbf,local-cka,linreg,relative}
DIRECTION=${DIRECTION:-both}
PARTS=${PARTS:-flickr8k crossdomain multi30k xtd10 classify}
M30K_LANGS=${M30K_LANGS:-en de fr cs}
XTD_LANGS=${XTD_LANGS:-en de fr es it ko pl ru tr zh jp}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

[ -d "$DATA" ] || { echo "fastcka: error: $DATA not found (the shared data folder)" >&2; exit 2; }
mkdir -p "$B" "$R"

has() { $F -q info "$1" >/dev/null 2>&1; }          # a complete store (group) exists
done_at() {      # the table exists with exactly the cells of these settings (FAQ at N_INIT)
  [ -f "$1" ] && $PY -c 'import sys, fastcka.evaluate as e
out, methods, seeds, draws, direction, n_init = sys.argv[1:]
t = e.read_table(out)
want = {c.key for c in e.plan(methods, seeds, int(draws), direction)}
ok = set(t.keys()) == want and all(r["n_init"] == int(n_init) for r in t if r["method"] == "faq")
sys.exit(0 if ok else 1)' "$1" "$METHODS" "$SEEDS" "$DRAWS" "$DIRECTION" "$N_INIT"
}
grid() {                                             # grid OUT SRC TGT [extra eval options]
  local out=$1; shift
  if done_at "$out"; then echo "experiments: $out complete for these settings, kept"; return; fi
  echo "experiments: $out"
  $F eval "$@" --methods "$METHODS" --seeds "$SEEDS" --queries "$QUERIES" --draws "$DRAWS" \
      --direction "$DIRECTION" --n-init "$N_INIT" -o "$out" --resume
}

flickr8k_stores() {
  local E=$DATA/embeddings S=$B/flickr8k.h5
  has $S::/text || $F -q import $E/flickr8k_caption_minilm_l6_mean5.npy --ids $E/flickr8k_ids.txt \
      --modality text -o $S::/text
  has $S::/image || $F -q import $E/flickr8k_image_efficientnet_lite0.npy --ids $E/flickr8k_ids.txt \
      --modality image -o $S::/image
}

part_flickr8k() {
  flickr8k_stores
  grid $R/flickr8k.csv $B/flickr8k.h5::/text $B/flickr8k.h5::/image
  $F report $R/flickr8k.csv -o $R/report --title "Flickr8k: MiniLM captions vs EfficientNet-lite0 images"
}

part_crossdomain() {
  flickr8k_stores
  local S=$B/scenes.h5
  [ -f $B/scenes/captions.csv ] || $PY -c 'import sys; from fastcka.scenes import write_scenes
write_scenes(sys.argv[1], n=1000, seed=0)' $B/scenes
  has $S::/image || $F -q embed image $B/scenes -o $S::/image --resume
  has $S::/text || $F -q embed text $B/scenes -o $S::/text --resume
  grid $R/crossdomain_seeds-scenes_queries-flickr8k.csv $B/flickr8k.h5::/text $B/flickr8k.h5::/image \
      --base $S::/text $S::/image
  grid $R/crossdomain_seeds-flickr8k_queries-scenes.csv $S::/text $S::/image \
      --base $B/flickr8k.h5::/text $B/flickr8k.h5::/image
}

part_multi30k() {
  flickr8k_stores
  local l
  for l in $M30K_LANGS; do
    has $B/multi30k_e5-$l.h5::/text || $F -q embed text $DATA/flickr8k/multi30k.tsv --lang $l \
        --encoder e5-small-multilingual -o $B/multi30k_e5-$l.h5::/text --resume
  done
  has $B/multi30k_minilm-en.h5::/text || $F -q embed text $DATA/flickr8k/multi30k.tsv --lang en \
      --encoder minilm-l6 -o $B/multi30k_minilm-en.h5::/text --resume
  for l in minilm-en $(printf 'e5-%s ' $M30K_LANGS); do      # 937 images, paired by id
    grid $R/multi30k_$l.csv $B/multi30k_$l.h5::/text $B/flickr8k.h5::/image
  done
}

part_xtd10() {
  local S=$B/xtd10_minilm-en.h5::/text l
  # ids: XTD10/test_image_names.txt, found by the reader (MIC/STAIR files included)
  has $S || $F -q embed text $DATA/xtd10 --lang en --encoder minilm-l6 -o $S --resume
  for l in $XTD_LANGS; do
    has $B/xtd10_e5-$l.h5::/text || $F -q embed text $DATA/xtd10 --lang $l \
        --encoder e5-small-multilingual -o $B/xtd10_e5-$l.h5::/text --resume
    grid $R/xtd10_minilm-en_e5-$l.csv $S $B/xtd10_e5-$l.h5::/text
  done
}

part_classify() {
  # classification by matching on the Fashion-MNIST subset (helper 13c: docs/results/classify/)
  $PY bench/classify_fmnist.py --out $R/classify
}

for p in $PARTS; do
  declare -F part_$p >/dev/null || { echo "fastcka: error: unknown part '$p' (PARTS: flickr8k crossdomain multi30k xtd10 classify)" >&2; exit 2; }
done
for p in $PARTS; do part_$p; done
[ -z "${SUMMARY_SKIP:-}" ] && $PY bench/experiments_summary.py "$R"
echo "experiments: done ($PARTS)"
