"The selector's params file and versioned adapter: the YAML fits `TuneConfig`, the adapter's manifest is complete."
import json
import pytest
from flexrl.core import load_params
from flexrl.tune import TuneConfig
from flexrl.lm import selector_asset


def test_params_file_fits_the_schema(root):
    cfg = load_params(root/'params'/'tune_selector.yaml', schema=TuneConfig)
    assert cfg.model == 'smollm2' and cfg.out == 'assets' and cfg.steps > 0


@pytest.mark.skipif(not (selector_asset()/'adapter_config.json').exists(), reason='no tuned adapter in flexrl/assets/selector')
def test_versioned_adapter_is_complete(root):
    "A complete manifest; an adapter of the intent language is the one the params file makes, and meets the bar."
    a = selector_asset()
    assert (a/'adapter_model.safetensors').stat().st_size < 20_000_000
    m = json.loads((a/'manifest.json').read_text())
    for k in ('params', 'data_seed', 'accuracy', 'git_sha', 'template'):
        assert k in m, k
    assert 'system' in m['template']   # its own prompt: an older adapter keeps the prompt it was tuned with
    if 'language' not in m:            # tuned before flexrl.language: its own (keyword-labelled) held-out sets
        acc = m['accuracy']['deployed']
        assert acc['heldout_states'] >= 0.95 and acc['heldout_paraphrases'] >= 0.95, acc
        pytest.skip('the versioned adapter predates the intent language: retune with params/tune_selector.yaml')
    params = load_params(root/'params'/'tune_selector.yaml', schema=TuneConfig)
    assert m['params']['rank'] == params.rank and m['params']['steps'] == params.steps, 'the adapter is not the one the params file makes'
    acc = m['accuracy']['deployed']
    for split in ('heldout_templates', 'heldout_synonyms'):
        assert all(v >= 0.95 for v in acc[split].values()), (split, acc[split])
