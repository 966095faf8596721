"The renderer's networks and losses: ST-LPIPS equals the stlpips-pytorch package's model, textures, generator, discriminator."
import sys, types
import numpy as np
import pytest
import torch
from dfe.core import DfeError
from dfe.models import (STLPIPS, stlpips_weights_path, NeuralTexture, DeferredRenderer, StyleUNetGenerator, WindowDiscriminator,
                        renderer_config, synthetic_batch, generator_input, region_weights, weighted_l1, perceptual_loss, model_sizes,
                        count_parameters, CONFIGS)


def package_stlpips():
    "The package's own ST-LPIPS VGG model. Its modules import torchvision and torchsummary at the top (only for other networks), so stub those two."
    saved = {k: sys.modules.get(k) for k in ('torchvision', 'torchvision.models', 'torchsummary')}
    tv = types.ModuleType('torchvision'); tv.models = types.ModuleType('torchvision.models')
    ts = types.ModuleType('torchsummary'); ts.summary = lambda *a, **k: None
    sys.modules.update({'torchvision': tv, 'torchvision.models': tv.models, 'torchsummary': ts})
    try:
        from stlpips_pytorch import stlpips
        return stlpips.LPIPS(net='vgg', variant='shift_tolerant', verbose=False, model_path=str(stlpips_weights_path())).eval()
    finally:
        for k, v in saved.items():
            if v is None: sys.modules.pop(k, None)
            else: sys.modules[k] = v


def test_stlpips_matches_package():
    ref, ours = package_stlpips(), STLPIPS()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 64, 80, generator=g)*2 - 1
    b = (a + 0.3*torch.randn(a.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        r, o = ref(a, b).flatten(), ours(a, b)
    np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-4, atol=1e-6)
    assert (o > 0).all()
    # gradients reach the first image only through our frozen network
    x = a.clone().requires_grad_(True)
    ours(x, b).sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in ours.parameters())


def test_stlpips_bad_weights(tmp_path):
    p = tmp_path/'w.pth'
    torch.save({'x': torch.zeros(1)}, p)
    with pytest.raises(DfeError, match='not the ST-LPIPS VGG weights'): STLPIPS(p)


def test_texture_tiles_do_not_bleed():
    t = NeuralTexture(channels=1, res=4, n_tiles=3)
    with torch.no_grad(): t.planes.copy_(torch.tensor([0., 10., 20.])[:, None, None, None].expand(3, 1, 4, 4))
    u = torch.linspace(0, 1, 21)
    uv = torch.stack([u, torch.full_like(u, 0.5)], -1)[None, None]        # (1, 1, 21, 2)
    for k in range(3):
        f = t(uv, torch.full((1, 1, 21), k))
        assert torch.allclose(f, torch.full_like(f, 10.*k))


def test_generator_starts_as_identity_and_learns():
    "The residual generator starts by returning the composited input RGB; one step on a loss moves it away from that."
    cfg = renderer_config('tiny')
    r = DeferredRenderer(cfg, ['a'])
    b = synthetic_batch(cfg, 2)
    o = r(b, ['a', 'a'])
    base = o['input'].reshape(2, cfg.window, cfg.tex_channels + 1, cfg.size, cfg.size)[:, :, :3]
    assert torch.allclose(o['pred'], base, atol=1e-6)
    opt = torch.optim.Adam(r.parameters(), lr=1e-2)
    (o['pred'] - o['target']).abs().mean().backward(); opt.step()
    with torch.no_grad(): o2 = r(b, ['a', 'a'])
    assert (o2['pred'] - o2['input'].reshape(base.shape[:2] + (-1,) + base.shape[3:])[:, :, :3]).abs().max() > 1e-3


def test_window_and_channel_checks():
    cfg = renderer_config('tiny')
    r = DeferredRenderer(cfg, ['a'])
    b = synthetic_batch(renderer_config('tiny', window=4), 1)
    with pytest.raises(DfeError, match='windows of 4 frames'): r(b, ['a'])
    with pytest.raises(DfeError, match='1 actor names for a batch of 2'): r(synthetic_batch(cfg, 2), ['a'])


def test_l1_weights_follow_the_paper():
    cfg = renderer_config('tiny')
    b = synthetic_batch(cfg, 1)
    w = region_weights(b['masks'])
    from dfe.models import region_mask
    mouth, lower = region_mask(b['masks'], 'mouth') > 0, region_mask(b['masks'], 'lower_face') > 0
    assert (w[mouth] == 10).all() and (w[lower & ~mouth] == 8).all() and (w[~lower & ~mouth] == 1).all()


def test_discriminator_sees_every_frame():
    cfg = renderer_config('tiny')
    d = WindowDiscriminator(cfg)
    x = torch.randn(2, cfg.window, 3, cfg.size, cfg.size, requires_grad=True)
    d(x).sum().backward()
    assert (x.grad.abs().sum((0, 2, 3, 4)) > 0).all()


def test_named_configuration_sizes():
    s = {n: model_sizes(n) for n in ('cpu', 'paper')}
    assert s['cpu']['generator'] < s['paper']['generator']
    assert s['cpu']['generator']*2 <= 25*2**20     # fp16 generator well under the 25 MB asset budget
    assert s['paper']['texture'] == 4*16*256**2
