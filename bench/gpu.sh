#!/usr/bin/env bash
# Serving measurements for a lent GPU machine (never a test dependency; the CPU benchmarks run without it).
#
#   bash bench/gpu.sh            # SECONDS_PER_RUN=30 CLIENTS=64 OUT_DIR=bench/results/gpu PYTHON=python
#
# 1. /v1/select with SmolLM2 + the tuned adapter ('tuned') on the GPU, through the real server
#    (`python -m flexrl.parallel serve`): micro-batching (max batch 32) vs none (max batch 1), 64 clients, and the
#    in-process limit of the same model at batch 32 (bench/bench_serve.py --gpu).
# 2. Tensor parallelism, decisions/s of SmolLM2 split over TP=1 and TP=3 GPUs: in-process
#    (`python -m flexrl.parallel bench`, no HTTP) and through the server (`bench_serve.py --tp N`). TP=3 needs 3 GPUs
#    (SmolLM2's 9 heads and 3 KV heads split 3 ways); with fewer it is recorded as skipped.
# Writes $OUT_DIR/*.json and $OUT_DIR/summary.json, and prints a table. Budget: ~6 minutes at 30 s per run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-bench/results/gpu}
S=${SECONDS_PER_RUN:-30}
C=${CLIENTS:-64}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpus.txt"
GPUS=$(nvidia-smi -L | wc -l)

echo "== 1. /v1/select, micro-batching on vs off, with the in-process limit (tuned SmolLM2, GPU)"
$PY bench/bench_serve.py --gpu --selector tuned --workloads select --clients "$C" --seconds "$S" --threads 0 \
    --max-batch 32 --out "$OUT/serve_select.json" || echo "(bench_serve failed or missed a goal: see above)"

echo "== 2. TP=1 vs TP=3"
for TP in 1 3; do
  if [ "$TP" -gt "$GPUS" ]; then
    echo "{\"tp\": $TP, \"skipped\": \"$GPUS GPU(s): TP=$TP takes one GPU per process\"}" > "$OUT/tp$TP.json"
    echo "{\"tp\": $TP, \"skipped\": \"$GPUS GPU(s)\"}" > "$OUT/serve_tp$TP.json"
    echo "TP=$TP skipped ($GPUS GPU(s))"; continue
  fi
  $PY -m torch.distributed.run --standalone --nproc-per-node="$TP" -m flexrl.parallel bench --model smollm2 \
      --adapter auto --dtype auto --decisions 256 --batch 32 --repeats 5 --warmup 2 --threads 1 --out "$OUT/tp$TP.json" \
      || echo "{\"tp\": $TP, \"failed\": true}" > "$OUT/tp$TP.json"
  $PY bench/bench_serve.py --tp "$TP" --gpu --selector tuned --workloads select --no-unbatched --clients "$C" \
      --seconds "$S" --threads 0 --max-batch 32 --out "$OUT/serve_tp$TP.json" || true
done

$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); rd = lambda n: json.loads((out/n).read_text()) if (out/n).exists() else {}
sel, rows = rd('serve_select.json').get('workloads', {}).get('select', {}), []
for name, r in sel.get('runs', {}).items():
    rows.append((f'server /v1/select, {name}', r.get('throughput_rps'), r.get('p50_ms'), r.get('p99_ms')))
if sel.get('limit'): rows.append(('in-process limit, batch 32', sel['limit']['decisions_per_s'], None, None))
for tp in (1, 3):
    b, s = rd(f'tp{tp}.json'), rd(f'serve_tp{tp}.json').get('workloads', {}).get('select', {}).get('runs', {})
    rows.append((f'TP={tp} in-process (flexrl.parallel bench)', b.get('decisions_per_s', b.get('skipped')),
                 b.get('latency_ms_p50'), b.get('latency_ms_p95')))
    m = s.get('micro-batching', {})
    rows.append((f'TP={tp} server /v1/select', m.get('throughput_rps', rd(f'serve_tp{tp}.json').get('skipped')),
                 m.get('p50_ms'), m.get('p99_ms')))
summary = {'gpus': (out/'gpus.txt').read_text().strip(), 'fraction_of_limit': sel.get('fraction_of_limit'),
           'batching_speedup': sel.get('speedup'), 'rows': [dict(zip(('what', 'decisions_per_s', 'p50_ms', 'p99_ms'), r))
                                                            for r in rows]}
(out/'summary.json').write_text(json.dumps(summary, indent=1))
print(f"\n{summary['gpus']}\n{'what':<46}{'decisions/s':>14}{'p50 ms':>10}{'p99/p95 ms':>12}")
for r in rows: print(f'{r[0]:<46}{r[1]!s:>14}{r[2]!s:>10}{r[3]!s:>12}')
print(f"select at {sel.get('runs', {}).get('micro-batching', {}).get('max_batch')} max batch: "
      f"{sel.get('fraction_of_limit')} of the in-process limit; micro-batching {sel.get('speedup')}x without")
PY
