#!/usr/bin/env bash
# Puts what benchmarks/gpu_check.sh needs and a GPU machine may lack into .gpu_carry/ (ignored by
# git through .git/info/exclude, never committed): Tiny Shakespeare from ../shared/data (or
# $FORMERS_DATA). Send that folder along with the working tree, then run the checks there:
#   bash benchmarks/gpu_carry.sh
#   (on the GPU machine)  bash benchmarks/gpu_check.sh /tmp/gpu && tar czf gpu_check.tar.gz -C /tmp gpu
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src="${FORMERS_DATA:-../shared/data}/tinyshakespeare/input.txt"
[[ -f "$src" ]] || { echo "no $src: set FORMERS_DATA to the shared data folder" >&2; exit 1; }
mkdir -p .gpu_carry/data/tinyshakespeare
cp "$src" .gpu_carry/data/tinyshakespeare/input.txt
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu_carry/' "$exclude" 2>/dev/null || echo '/.gpu_carry/' >> "$exclude"
du -sh .gpu_carry
