#!/usr/bin/env bash
# The prepared GPU check (at most 8 minutes on one GPU): the device tests on CUDA, train.py for 200 steps of the
# memory network and of the seq2seq tagger on a tiny random BERT, the pipeline at batch 1 and 32 (and under bf16
# autocast), and predict.py, all on CUDA. Run from the repository root on a machine with a GPU:
#
#     bash benchmarks/gpu_check.sh                    # writes its log to $OUT (or /tmp/gpu_check)
#     DEVICE=cpu STEPS=20 bash benchmarks/gpu_check.sh  # the same steps on a CPU, to check the script itself
#
# Packages the machine lacks travel as wheels in .whl/ (built here by `bash benchmarks/gpu_wheels.sh`, 44 MB;
# the device tool's run with carry [".whl"] and timeout_s 540): they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-200}"
OUT="${OUT:-/tmp/gpu_check}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 - <<EOF
import torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__, "device", "$DEVICE",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no CUDA)")
assert "$DEVICE" == "cpu" or torch.cuda.is_available(), "no CUDA device"
EOF

step() { echo; echo "=== $1 ($(date +%T))"; }

step "1. the device tests"
python3 -m pytest tests/test_devices.py -q -x -p no:cacheprovider

step "2. train.py, ${STEPS} steps, tiny random BERT, memory network and seq2seq tagger"
python3 - "$WORK/tiny-bert" <<'EOF'
import json, sys
from transformers import BertConfig, BertModel, BertTokenizerFast
from modeling.char_tokenization import SPECIAL_TOKENS
chars = sorted({c for line in open("data_scripts/sample/train.json", encoding="utf-8") for c in json.loads(line)["text"]})
vocab = SPECIAL_TOKENS + [c for c in chars if c not in SPECIAL_TOKENS]
out = sys.argv[1]
import os; os.makedirs(out, exist_ok=True)
open(f"{out}/vocab.txt", "w", encoding="utf-8").write("\n".join(vocab) + "\n")
BertTokenizerFast(f"{out}/vocab.txt").save_pretrained(out)
config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, max_position_embeddings=128)
BertModel(config).save_pretrained(out)
print("tiny BERT:", len(vocab), "tokens")
EOF
for model in memory seq2seq; do
  extra=()
  [ "$model" = seq2seq ] && extra=(--model_type seq2seq)
  python3 train.py --encoder "$WORK/tiny-bert" "${extra[@]}" --max_steps "$STEPS" --per_device_train_batch_size 16 \
    --output_dir "$WORK/$model" --save_strategy no --load_best_model_at_end false --eval_strategy no \
    --use_cpu "$([ "$DEVICE" = cpu ] && echo true || echo false)" 2>&1 | grep -vE "it/s|s/it" | tail -n 12
done
python3 train.py --output_dir "$WORK/bilstm" --num_train_epochs 3 --save_strategy no --load_best_model_at_end false \
  --use_cpu "$([ "$DEVICE" = cpu ] && echo true || echo false)" 2>&1 | grep -vE "it/s|s/it" | tail -n 4

step "3. the pipeline on $DEVICE: batch 1 and 32, fp32 and bf16 autocast (chars/s, the sample's dev texts x 20)"
python3 - "$WORK" "$DEVICE" <<'EOF'
import json, sys, time
import torch
from transformers import pipeline
work, device = sys.argv[1], sys.argv[2]
texts = [json.loads(l)["text"] for l in open("data_scripts/sample/dev.json", encoding="utf-8")] * 20
chars = sum(map(len, texts))
for name in ("bilstm", "memory", "seq2seq"):
    ner = pipeline("chinese-ner", model=f"{work}/{name}", trust_remote_code=True, device=device)
    reference = ner(texts[:40])
    for batch in (1, 32):
        for bf16 in (False, True):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                ner(texts[:64], batch_size=batch)  # warm-up
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = ner(texts, batch_size=batch)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            same = sum(a == b for a, b in zip([[(e["word"], e["entity_group"]) for e in x] for x in out[:40]],
                                               [[(e["word"], e["entity_group"]) for e in x] for x in reference]))
            print(f"{name:8s} batch {batch:2d} {'bf16' if bf16 else 'fp32'}: {chars / seconds:10,.0f} chars/s; "
                  f"{same}/40 texts with the fp32 batch-32 entities")
EOF

step "4. predict.py on $DEVICE"
python3 -c "
import json
texts = [json.loads(l)['text'] for l in open('data_scripts/sample/dev.json', encoding='utf-8')] * 50
open('$WORK/texts.txt', 'w', encoding='utf-8').write('\n'.join(texts) + '\n')"
python3 predict.py --model_name_or_path "$WORK/bilstm" --input "$WORK/texts.txt" --output "$WORK/entities.jsonl" \
  --device "$DEVICE" --shard_size 1000 2>&1 | grep -v "texts/s\]" | tail -n 6
head -c 300 "$WORK/entities.jsonl"; echo
step "done"
