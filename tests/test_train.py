"Training runs on synthetic actors: torchrun with 2 processes (DDP, gloo), resuming, mixed batches, adaptation modes."
import json, os, subprocess, sys
from dataclasses import replace
from pathlib import Path
import pytest
import torch
from dfe.core import DfeError
from dfe.train import (TrainConfig, write_synthetic_clip, fit, read_log, load_state, load_renderer, adapt, train_prior, ClipSlice)
from dfe.dataset import ClipData

TINY = TrainConfig(model='tiny', iters=4, batch_size=2, log_every=1, val_every=2, ckpt_every=2, val_windows=2,
                   weights=dict(perceptual=0.))


@pytest.fixture(scope='module')
def actors(tmp_path_factory):
    d = tmp_path_factory.mktemp('actors')
    for i, n in enumerate(('synth_a_1', 'synth_b_1', 'synth_c_1')): write_synthetic_clip(d/'clips'/n, n, frames=40, size=32, seed=i)
    return d


def torchrun(args, cwd, nproc=2, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), '-m', 'dfe.train', *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_two_processes(actors, tmp_path):
    "A tiny prior trained by 2 CPU processes: both take part, stay in sync, the run resumes under torchrun too."
    out = tmp_path/'ddp'
    data = tmp_path/'data'; data.mkdir()
    for n in ('synth_a_1', 'synth_b_1'): (data/n).symlink_to(actors/'clips'/n)
    args = lambda iters, batch=4, o=out: ['prior', '--data', str(data), '-o', str(o), '--config', 'tiny', '--iters', str(iters),
                                   '--batch-size', str(batch), '--no-progress']
    r = torchrun(args(3), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run = json.loads((out/'run.json').read_text())
    assert run['world_size'] == 2 and run['ranks_in_sync'] is True
    assert [x['iter'] for x in read_log(out, 'train')] == [3]    # log_every (10) > iters: only the last iteration is logged
    st = load_state(out/'ckpt'/'last.pt')
    assert st['iter'] == 3 and sorted(st['textures']) == ['synth_a', 'synth_b']
    r2 = torchrun(args(5), tmp_path)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert load_state(out/'ckpt'/'last.pt')['iter'] == 5
    assert json.loads((out/'run.json').read_text())['ranks_in_sync'] is True
    assert [x['iter'] for x in read_log(out, 'train')] == [3, 5]
    # a batch that the processes cannot share evenly is refused, with a message
    r3 = torchrun(args(6, 3, tmp_path/'ddp3'), tmp_path)
    assert 'not a multiple of the 2 processes' in r3.stderr
    assert r3.returncode != 0


def _spy_batches(run):
    "Run `run()` recording (clip, first frame) of every window of every training batch."
    import dfe.train as T
    seen, orig = [], T.train_step
    def spy(R, D, Dw, opt, opt_d, lp, batch, *a, **k):
        seen.append(list(zip(batch['clip'], batch['index'][:, 0].tolist()))); return orig(R, D, Dw, opt, opt_d, lp, batch, *a, **k)
    T.train_step = spy
    try: run()
    finally: T.train_step = orig
    return seen


def test_resume_continues_the_data_stream(actors, tmp_path):
    "Training 4 iterations at once, or 2 then 2 more after a resume, sees the same windows in the same order."
    cfg = replace(TINY, iters=4, val_every=0)
    cs = [actors/'clips'/'synth_a_1', actors/'clips'/'synth_b_1']
    once = _spy_batches(lambda: fit(tmp_path/'once', cs, cfg, progress=False))
    twice = _spy_batches(lambda: fit(tmp_path/'twice', cs, replace(cfg, iters=2), progress=False))
    twice += _spy_batches(lambda: fit(tmp_path/'twice', cs, cfg, progress=False))
    assert len(once) == 4 and once == twice
    assert load_state(tmp_path/'twice'/'ckpt'/'last.pt')['iter'] == 4
    assert [r['iter'] for r in read_log(tmp_path/'twice', 'train')] == [1, 2, 3, 4]


def test_checkpoint_is_weights_only_and_atomic(actors, tmp_path):
    fit(tmp_path/'r', [actors/'clips'/'synth_a_1'], replace(TINY, iters=2), progress=False)
    st = torch.load(tmp_path/'r'/'ckpt'/'last.pt', weights_only=True)
    assert st['format'] == 'dfe.train/1' and st['iter'] == 2 and 'opt' in st and 'opt_d' in st
    assert not [p for p in (tmp_path/'r').rglob('*.tmp*')]            # no temporaries left behind
    r = load_renderer(tmp_path/'r')
    assert r.actors == ['synth_a'] and next(r.parameters()).dtype == torch.float32


def test_mixed_batches_half_and_half(actors, tmp_path):
    "Adaptation with mixing: every batch holds the new actor and prior actors 1:1."
    train_prior([actors/'clips'/'synth_a_1', actors/'clips'/'synth_b_1'], tmp_path/'prior', replace(TINY, iters=2), progress=False)
    seen = []
    import dfe.train as T
    orig = T.train_step
    def spy(R, D, Dw, opt, opt_d, lp, batch, actors_b, *a, **k):
        seen.append(list(actors_b)); return orig(R, D, Dw, opt, opt_d, lp, batch, actors_b, *a, **k)
    T.train_step = spy
    try: adapt([actors/'clips'/'synth_c_1'], tmp_path/'ad', tmp_path/'prior', frames=20, cfg=replace(TINY, iters=3, batch_size=4), progress=False)
    finally: T.train_step = orig
    assert len(seen) == 3
    for s in seen: assert sum(a == 'synth_c' for a in s) == 2 and all(a in ('synth_a', 'synth_b') for a in s if a != 'synth_c')
    # without mixing, only the new actor
    seen.clear(); T.train_step = spy
    try: adapt([actors/'clips'/'synth_c_1'], tmp_path/'ad2', tmp_path/'prior', frames=20, mix='off', cfg=replace(TINY, iters=2), progress=False)
    finally: T.train_step = orig
    assert all(a == 'synth_c' for s in seen for a in s)
    # the shipped form of the prior (renderer.pt, no textures or clips) cannot mix when asked to
    with pytest.raises(DfeError, match='mixed training needs'):
        adapt([actors/'clips'/'synth_c_1'], tmp_path/'ad3', tmp_path/'prior'/'renderer.pt', mix='on', cfg=TINY, progress=False)
    # and the prior's own actors are not "new"
    with pytest.raises(DfeError, match="one of the prior's actors"):
        adapt([actors/'clips'/'synth_a_1'], tmp_path/'ad4', tmp_path/'prior', cfg=TINY, progress=False)


def test_adaptation_never_trains_on_validation_frames(actors, tmp_path):
    train_prior([actors/'clips'/'synth_a_1'], tmp_path/'prior', replace(TINY, iters=1), progress=False)
    adapt([actors/'clips'/'synth_c_1'], tmp_path/'ad', tmp_path/'prior', frames=1000, mix='off', cfg=replace(TINY, iters=1), progress=False)
    run = json.loads((tmp_path/'ad'/'run.json').read_text())
    (tr,), (va,) = run['clips'], run['val_clips']
    assert tr['slice'][1] <= va['slice'][0] and va['slice'][1] == 40


def test_prior_continues_from_the_shipped_prior(tmp_path):
    "`train_prior(init=...)` with the shipped `prior_cpu` file: its generator and mean texture start the run; a held-out identity it saw is refused."
    from dfe.assets import asset_path
    shipped = asset_path('prior_cpu')
    st = load_state(shipped)
    for i, n in enumerate(('synth_p_1', 'synth_q_1')): write_synthetic_clip(tmp_path/'clips'/n, n, frames=12, size=128, seed=i)
    cfg = TrainConfig(model=st['config'], iters=1, batch_size=1, lr=0., tex_lr=0., d_lr=0., val_every=0, tex_init='mean',
                      weights=dict(perceptual=0.))
    res = train_prior([tmp_path/'clips'/'synth_p_1', tmp_path/'clips'/'synth_q_1'], tmp_path/'run', cfg, heldout=(), init=shipped, progress=False)
    assert res['iter'] == 1
    ck = load_state(tmp_path/'run'/'ckpt'/'last.pt')
    assert all(torch.equal(st['generator'][k].float(), ck['generator'][k]) for k in st['generator'])   # rates 0: still the shipped generator
    for a in ('synth_p', 'synth_q'): assert torch.equal(ck['textures'][a], st['mean_texture'].float())
    init = json.loads((tmp_path/'run'/'run.json').read_text())['init']
    assert init['kind'] == 'prior' and init['iter'] == st['meta']['iter']
    seen = st['meta']['actors_trained'][0]
    with pytest.raises(DfeError, match='held-out identities'):
        train_prior([tmp_path/'clips'/'synth_p_1'], tmp_path/'run2', cfg, heldout=(seen,), init=shipped, progress=False)
