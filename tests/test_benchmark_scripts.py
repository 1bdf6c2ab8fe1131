"""The prepared GPU check and the memory estimate run end to end (the GPU
check on the CPU with tiny models: its plumbing, not its numbers)."""
import os.path as osp

from conftest import ROOT, load_script


def _load(name):
    return load_script(f'benchmarks/{name}.py')


def test_gpu_check_plumbing_on_cpu(tmp_path):
    out = tmp_path / 'gpu_check.json'
    report = _load('gpu_check').main([
        '--device', 'cpu', '--tiny', '--batches', '16', '8', '--steps', '1',
        '--warmup', '0', '--dtypes', 'bfloat16', '--out', str(out)])
    rows = {(r['variant'], r['batch']): r for r in report['results']}
    # the largest candidate that fits, and 64
    assert set(rows) == {(v, b) for v in ('MAE', 'MixedAE') for b in (16, 64)}
    assert rows[('MAE', 16)]['time_ratio'] == 1.0
    assert all(r['nonfinite'] == [] for r in rows.values())
    assert [r['variant'] for r in report['full']] == [
        'MixedAE-Full V=2', 'MixedAE-Full V=4']
    assert out.exists()


def test_memory_estimate_of_a_pretraining_config(tmp_path):
    est = _load('memory_estimate')
    cfg = osp.join(ROOT, 'configs/mixedae/mixedae_vit-base-p16_8xb512-amp-'
                   'coslr-300e_in1k.py')
    row = est.estimate(cfg, probe_batch=4, overhead_gib=0., transient=0.)
    # homologous attention keeps no tensor of the attention map's size
    assert row['attention_map_gib'] == 0
    assert row['activations_gib'] > row['states_gib'] > 0
    per_gpu = row['batch_per_gpu'] * row['accumulative_counts']
    assert row['global_batch_8gpus'] == 8 * per_gpu
    assert row['peak_estimate_gib'] == \
        row['states_gib'] + row['activations_gib']
