"""Time to load one training window from a dfe clip folder (dfe.dataset.WindowDataset) on the CPU.

A window is what the renderer's training loop asks for: T consecutive 256² crops with their UV/part/depth/mask
rasters, audio features and parameters, plus K random reference frames (defaults T = 5, K = 1). The clip folder is
built first from a tracked clip (`--track TRACKDIR`, default: vox_f tracked with light settings, cached) into a
temporary folder; then `--n` random windows are read after a warm-up pass, so the figures are for a folder in the
page cache (the training case after the first epoch). Also timed: batches of 8 through a DataLoader (0 workers).
One torch thread, as in a DataLoader worker. Target (issue #4): <= 20 ms per window.

    .venv/bin/python bench/bench_dataset.py [--track TRACKDIR] [--size 256] [--window 5] [--refs 1] [--n 300]

Writes outputs/bench/dataset.json (atomically) and prints a summary.
"""
from __future__ import annotations
import argparse, os, platform, shutil, tempfile, time
from pathlib import Path
import numpy as np
import torch
from dfe.core import outputs_dir, data_dir, atomic_write_json
from dfe.dataset import CropSettings, build_clip_dataset, WindowDataset, ClipData

TARGET_MS = 20.0

def default_track(dest:Path) -> Path:
    "vox_f tracked with the light settings of the notebooks (the tracking cache makes repeats instant)."
    from dfe.tracking import track_video, TrackSettings
    s = TrackSettings(shape_frames=8, shape_iters=60, landmark_iters=60, appearance_frames=2, appearance_iters=20,
                      crop=64, texture_size=32, frame_iters=3)
    track_video(data_dir()/'clips'/'vox_f.mp4', dest, settings=s, device='cpu', progress=False)
    return dest

def folder_bytes(p:Path) -> int: return sum(f.stat().st_size for f in p.iterdir())

def run(track=None, size=256, window=5, refs=1, n=300, threads=1, seed=0):
    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix='dfe-bench-dataset-'))
    try:
        tdir = Path(track) if track else default_track(tmp/'track')
        t0 = time.perf_counter()
        folder, _ = build_clip_dataset(tdir, tmp/'clip', CropSettings(size=size), device='cpu', progress=False)
        build_s = time.perf_counter() - t0
        clip = ClipData(folder)
        ds = WindowDataset([clip], window=window, refs=refs)
        g = np.random.default_rng(seed)
        for i in range(len(ds)): ds[i]                                    # warm: the folder in the page cache
        load0 = os.getloadavg()
        ts, cpu = [], []
        for i in g.integers(0, len(ds), n):
            t, c = time.perf_counter(), time.process_time()
            ds[int(i)]
            ts.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
        ts, cpu = np.array(ts)*1000, np.array(cpu)*1000
        dl = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=0)
        bt, it = [], iter(dl)
        for _ in range(min(20, len(dl))):
            t = time.perf_counter(); next(it); bt.append(time.perf_counter() - t)
        item = ds[0]
        nbytes = sum(v.numel()*v.element_size() for v in item.values() if isinstance(v, torch.Tensor))
        return dict(what=f'one WindowDataset item (T={window} frames + K={refs} references, {size}² crops), warm page cache',
                    clip=clip.clip, frames=len(clip), size=size, window=window, refs=refs, windows=len(ds), samples=n,
                    window_ms=dict(median=float(np.median(ts)), mean=float(ts.mean()), p90=float(np.percentile(ts, 90)),
                                   p99=float(np.percentile(ts, 99)), max=float(ts.max()), min=float(ts.min())),
                    window_cpu_ms_median=float(np.median(cpu)), batch8_ms_median=float(np.median(bt))*1000 if bt else None,
                    item_bytes=int(nbytes), folder_bytes=folder_bytes(folder), folder_bytes_per_frame=folder_bytes(folder)/len(clip),
                    build_seconds=round(build_s, 2), build_frames_per_second=round(len(clip)/build_s, 2),
                    threads=threads, torch=torch.__version__, machine=platform.machine(), cpus=os.cpu_count(),
                    loadavg_before=load0, loadavg_after=os.getloadavg(), target_ms=TARGET_MS,
                    meets_target=bool(np.median(ts) <= TARGET_MS))
    finally: shutil.rmtree(tmp, ignore_errors=True)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--track', default=None, help='TRACKDIR with track.npz (default: vox_f, light tracking settings)')
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--window', type=int, default=5)
    ap.add_argument('--refs', type=int, default=1)
    ap.add_argument('--n', type=int, default=300, help='windows timed')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    res = run(a.track, a.size, a.window, a.refs, a.n, a.threads)
    out = atomic_write_json(outputs_dir()/'bench'/'dataset.json', res)
    w = res['window_ms']
    print(f"{res['clip']}: {res['frames']} frames at {res['size']}², built in {res['build_seconds']} s "
          f"({res['build_frames_per_second']} frames/s), {res['folder_bytes_per_frame']/1e3:.0f} kB per frame on disk")
    print(f"window (T={res['window']}, K={res['refs']}, {res['item_bytes']/1e6:.1f} MB): median {w['median']:.1f} ms, p90 {w['p90']:.1f}, "
          f"p99 {w['p99']:.1f}, max {w['max']:.1f} (CPU {res['window_cpu_ms_median']:.1f} ms); batch of 8: {res['batch8_ms_median']:.0f} ms")
    print(f"target <= {TARGET_MS:.0f} ms per window (median): {'met' if res['meets_target'] else 'NOT met'}; "
          f"load average {res['loadavg_before'][0]:.1f} -> {res['loadavg_after'][0]:.1f}; wrote {out}")
    return res

if __name__ == '__main__': main()
