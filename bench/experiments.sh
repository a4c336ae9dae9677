#!/usr/bin/env bash
# `make experiments`: the Flickr8k grid on the reference embeddings of ../shared/data, both
# directions, 6 seed counts, 3 query draws; each cell is journaled, so a rerun resumes.
set -euo pipefail
F=.venv/bin/fastcka
E=../shared/data/embeddings
[ -d "$E" ] || { echo "fastcka: error: ../shared/data/embeddings not found" >&2; exit 2; }
mkdir -p build/experiments docs/results
S=build/experiments/flickr8k.h5
[ -f $S ] || { $F -q import $E/flickr8k_caption_minilm_l6_mean5.npy --ids $E/flickr8k_ids.txt --modality text -o $S::/text
               $F -q import $E/flickr8k_image_efficientnet_lite0.npy --ids $E/flickr8k_ids.txt --modality image -o $S::/image; }
$F eval $S::/text $S::/image --methods faq:rbf,local-cka,linreg,relative \
    --seeds 10,20,40,80,160,320 --queries 500 --draws 3 --direction both \
    --n-init "${N_INIT:-20}" -o docs/results/flickr8k.csv --resume
$F report docs/results/flickr8k.csv -o docs/results/report --title "Flickr8k: MiniLM captions vs EfficientNet-lite0 images"
# classification by matching on the Fashion-MNIST subset (docs/results/classify/)
.venv/bin/python bench/classify_fmnist.py --out docs/results/classify
