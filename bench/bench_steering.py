"""Speed and accuracy of the skill selectors (`flexrl.lm`) on SmolLM2-135M-Instruct, offline, on CPU.

Speed: decisions/s and ms/decision of `HFSelector` in each mode (`score`, `constrained`, `generate`) at batch
1, 8 and 64, against the naive way on the same model, prompts and run: one `model.generate()` per prompt (the
whole prompt, greedy, up to --max-new-tokens) and `parse_skill` on its text. The selector is the default one
(the tuned adapter of flexrl/assets/selector when present, else zero-shot), in the dtype `default_selector`
uses (bfloat16 where the CPU has it; --dtype float32 to compare), with its default forward-pass size (`batch_size`,
32 decisions: a batch of 64 runs as two passes; larger passes are slower per decision on this CPU, their
activations no longer fit the caches).

Accuracy: agreement with the privileged oracle (`ScriptedSelector` reading each decision's true intent) on the three
held-out sets of `flexrl.tune.eval_sets` (new states; held-out templates; held-out synonyms; every intent kind equally
often, labels with a clear best skill), in all and per intent kind, for the random baseline, the keyword baseline
(the oracle's look-ahead with the intent read off the words by keyword rules), the zero-shot model and the tuned
model (score mode; and its other modes).

Prints a table and writes bench/results/steering.json.
    python bench/bench_steering.py [--n 64] [--n-acc 240] [--dtype auto] [--threads 2] [--no-accuracy] [--out FILE]
"""
from __future__ import annotations
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import argparse, json, platform, time
from pathlib import Path
import torch
from flexrl.steering import SKILLS, INTENT_KINDS, RandomSelector, ScriptedSelector, parse_skill
from flexrl.lm import MODES, HFSelector, default_selector, selector_asset, cpu_dtype
from flexrl.tune import make_examples, agreement, eval_sets, tune_config

RESULTS = Path(__file__).parent/'results'/'steering.json'


def cpu_model() -> str:
    "The CPU's model name (Linux), else what `platform` knows."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def time_select(sel: HFSelector, ds, batch: int) -> float:
    "Seconds per decision of `sel.select` over `ds` in batches of `batch` (after one warm-up batch)."
    sel.select(ds[:batch])
    t = time.perf_counter()
    for i in range(0, len(ds), batch): sel.select(ds[i:i + batch])
    return (time.perf_counter() - t) / len(ds)


def time_naive(sel: HFSelector, ds, max_new_tokens: int) -> tuple[float, float, int]:
    "Seconds per decision of per-prompt `generate()` + `parse_skill`, the fraction of valid answers and the mean tokens generated."
    model, tok = sel.model, sel.tokenizer
    def one(d):
        ids = torch.tensor([sel.prefix_ids(SKILLS) + sel.suffix_ids(d, SKILLS)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, ids.shape[1]:]
        return parse_skill(tok.decode(out, skip_special_tokens=True), SKILLS), len(out)
    one(ds[0])
    t = time.perf_counter()
    got = [one(d) for d in ds]
    return (time.perf_counter() - t) / len(ds), sum(s is not None for s, _ in got) / len(ds), sum(n for _, n in got) / len(ds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=64, help='decisions timed per mode and batch size')
    p.add_argument('--n-acc', type=int, default=240, help='decisions per accuracy set (a multiple of the 8 intent kinds)')
    p.add_argument('--dtype', default='auto', help="'auto' (bfloat16 where the CPU has it), 'float32' or 'bfloat16'")
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--max-new-tokens', type=int, default=16, help='naive generate() and generate mode')
    p.add_argument('--batches', default='1,8,64')
    p.add_argument('--no-accuracy', action='store_true', help='time only (repeat runs for the median)')
    p.add_argument('--out', type=Path, default=RESULTS, help='the JSON written')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batches.split(',')]
    tuned_present = (selector_asset()/'adapter_config.json').exists()
    t0 = time.time()
    tuned = default_selector(dtype=a.dtype, max_new_tokens=a.max_new_tokens)
    zero = default_selector(adapter=None, dtype=a.dtype, max_new_tokens=a.max_new_tokens)
    print(f'models loaded in {time.time() - t0:.0f}s; tuned adapter: {tuned_present}; dtype {tuned.model.dtype}; {tuned.batch_size} decisions per forward pass')
    ds = [d for d, _ in make_examples(a.n, 4242, 'heldout_synonyms')]

    speed = {}
    naive_s, naive_valid, naive_tokens = time_naive(tuned, ds[:max(8, a.n // 4)], a.max_new_tokens)
    speed['naive generate+parse'] = {'ms_per_decision': 1000 * naive_s, 'decisions_per_s': 1 / naive_s, 'valid': naive_valid, 'tokens': naive_tokens}
    for mode in MODES:
        sel = HFSelector(tuned.model, tuned.tokenizer, mode, template=tuned.template, max_new_tokens=a.max_new_tokens)
        for b in batches:
            s = time_select(sel, ds, b)
            speed[f'{mode} b{b}'] = {'ms_per_decision': 1000 * s, 'decisions_per_s': 1 / s, 'speedup_vs_naive': naive_s / s}
    print(f"\n{'speed (' + ('tuned' if tuned_present else 'zero-shot') + f', {tuned.model.dtype})':34} {'ms/decision':>12} {'decisions/s':>12} {'x naive':>8}")
    for k, v in speed.items(): print(f"{k:34} {v['ms_per_decision']:12.1f} {v['decisions_per_s']:12.2f} {v.get('speedup_vs_naive', 1.0):8.1f}")
    print(f"(naive: {naive_valid:.0%} of its texts named a skill, {naive_tokens:.1f} tokens generated on average)")
    if tuned_present:  # the zero-shot model rambles, so naive generation costs more tokens
        zn_s, zn_valid, zn_tokens = time_naive(zero, ds[:max(8, a.n // 4)], a.max_new_tokens)
        zs = time_select(HFSelector(zero.model, zero.tokenizer, 'score', template=zero.template), ds, 8)
        speed['zero-shot naive generate+parse'] = {'ms_per_decision': 1000 * zn_s, 'decisions_per_s': 1 / zn_s, 'valid': zn_valid, 'tokens': zn_tokens}
        speed['zero-shot score b8'] = {'ms_per_decision': 1000 * zs, 'decisions_per_s': 1 / zs, 'speedup_vs_naive': zn_s / zs}
        print(f"zero-shot model: naive {1000 * zn_s:.1f} ms/decision ({zn_tokens:.1f} tokens, {zn_valid:.0%} valid), "
              f"score b8 {1000 * zs:.1f} ms/decision: {zn_s / zs:.1f}x")

    sets = {} if a.no_accuracy else eval_sets(tune_config(n_eval=a.n_acc, eval_seed=777))
    sels = {'random': RandomSelector(0), 'keyword baseline': ScriptedSelector(privileged=False), 'zero-shot (score)': zero}
    if tuned_present:
        for mode in MODES: sels[f'tuned ({mode})'] = HFSelector(tuned.model, tuned.tokenizer, mode, template=tuned.template)
    acc = {name: {k: agreement(s, v) for k, v in sets.items()} for name, s in sels.items()}
    for k in sets:
        print(f"\n{'agreement, ' + k:30} " + ' '.join(f'{c[:9]:>9}' for c in ['all', *INTENT_KINDS]))
        for n, v in acc.items(): print(f'{n:30} ' + ' '.join(f"{v[k].get(c, float('nan')):9.1%}" for c in ['all', *INTENT_KINDS]))

    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({'speed': speed, 'accuracy': acc, 'tuned_adapter': tuned_present, 'dtype': str(tuned.model.dtype), 'forward_pass_rows': tuned.batch_size,
                                   'n': a.n, 'n_acc': a.n_acc, 'threads': a.threads, 'cpu': cpu_model(),
                                   'torch': torch.__version__, 'date': time.strftime('%Y-%m-%d %H:%M')}, indent=2) + '\n')
    print(f'\nwrote {a.out}')


if __name__ == '__main__':
    main()
