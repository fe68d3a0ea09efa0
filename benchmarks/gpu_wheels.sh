#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs on the GPU machine, whose Python 3.12 has torch but not the rest of
# requirements.txt (nothing can be fetched there). Run here, from the repository root; .whl/ is git-ignored and
# travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  transformers==5.23.0 tokenizers==0.23.3 huggingface-hub==2.4.0 datasets==5.2.0 dill multiprocess \
  pytorch-crf==0.7.2 rapidfuzz==3.14.6 pyahocorasick==2.3.1 hf-xet
# sdists only on the index: built here into pure-Python wheels
python3 -m pip wheel -q --no-deps -w .whl jieba==0.42.1 seqeval==1.2.2
ls -la .whl && du -sh .whl
