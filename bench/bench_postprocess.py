"""Post-processing (dfe.postprocess, paper §3.7) on the cropped corpus: which segmentation input works on face crops,
the Table 4 analog (post-processing off/on) on simulated generated crops, and the time per frame.

Reads the clip folders that `dfe crop-corpus` wrote (outputs/crop/<clip>/: frames.npy, masks.npy, boxes in
params.npz) and decodes the first `--frames` frames of each clip's source video with dfe.io (never writes there).

1. segmentation: MediaPipe SelfieSegmentation model 0/1 on the crop, on the full frame (mask cropped with the box)
   and on the crop with context (box 1.5x and 2x); per variant the mean person probability on the mesh's face mask
   (face recall), flicker (mean |p_t - p_t-1|), agreement of the 0.5-thresholded mask with the other variants, ms.
2. table: `postprocess_table` rows (w/o post-processing, + keep real background, + paste region, full) on
   crops from `simulate_generated` (stuck ring, blur, colour change), per clip and averaged.
3. timing: `paste_back_frames` wall and process-CPU ms per frame, by frame size (the machine's load average is
   recorded: wall times on a shared machine are not speeds).
4. with `--runs RUN[,RUN]` instead: the Table 4 analog on a trained renderer's own output. Each run (`dfe adapt`,
   `dfe evaluate-paper` runs) renders its held-out frames (re-enactment: the real frames are the ground truth), and
   the rows are computed on those crops pasted into the real full-resolution frames.
   Writes outputs/bench/postprocess_renderer.json.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_postprocess.py [--frames 40] [--table-frames 24] [--clips a,b]
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_postprocess.py --runs outputs/eval/runs/styletalk_reagan/full-100f-600it

Writes outputs/bench/postprocess.json (atomically) and prints a summary.
"""
from __future__ import annotations
import argparse, os, platform, time
from pathlib import Path
import numpy as np
from dfe.core import outputs_dir, atomic_write_json
from dfe.cropping import crop_frame, MASK_BITS
from dfe.dataset import ClipData
from dfe.io import read_frames
from dfe.postprocess import (segment_person, simulate_generated, postprocess_table, paste_back_frames, table_markdown,
                             POSTPROCESS_ROWS)

def clip_folders(names=None) -> list:
    root = outputs_dir()/'crop'
    ds = sorted(d for d in root.iterdir() if (d/'dataset.json').exists()) if root.is_dir() else []
    if names: ds = [d for d in ds if d.name in names]
    if not ds: raise SystemExit(f"no clip folders in {root} (run `dfe crop-corpus` first)")
    return ds

def load(folder:Path, n:int):
    c = ClipData(folder)
    n = min(n, len(c))
    fr = read_frames(c.manifest['source'], fps=c.manifest['fps'], count=n)
    return c, fr, np.array(c.frames[:n]), np.array(c.masks[:n]), c.params['boxes'][:n]

def context_mask(frame, box, S, p, k):
    "Person probability of the crop, segmented with a box p× as large around it."
    x0, y0, sd = box
    n = int(round(p*S))
    big, _ = crop_frame(frame, (x0 - sd*(p - 1)/2, y0 - sd*(p - 1)/2, p*sd), n)
    m = segment_person(big, k)
    o = (p - 1)/2*S
    return crop_frame(m, (o, o, float(S)), S)[0]

def segmentation_variants(fr, crops, masks, boxes) -> dict:
    S = crops.shape[1]
    V, ms = {}, {}
    def add(name, fn):
        t = time.perf_counter(); V[name] = np.stack([fn(i) for i in range(len(crops))]); ms[name] = (time.perf_counter() - t)/len(crops)*1000
    for k in (0, 1):
        add(f'crop/model{k}', lambda i: segment_person(crops[i], k))
        add(f'full frame/model{k}', lambda i: crop_frame(segment_person(fr[i], k), boxes[i], S)[0])
        for p in (1.5, 2.0): add(f'context {p}x/model{k}', lambda i, p=p: context_mask(fr[i], boxes[i], S, p, k))
    face, inside = (masks & MASK_BITS['face']) > 0, (masks & MASK_BITS['inside']) > 0
    both = inside[1:] & inside[:-1]
    names = list(V)
    out = {}
    for a in names:
        agree = [float(np.mean((V[a] > .5) == (V[b] > .5))) for b in names if b != a]
        out[a] = dict(face_recall=float(V[a][face].mean()), flicker=float(np.abs(np.diff(V[a], axis=0))[both].mean()),
                      agreement=float(np.mean(agree)), ms=ms[a])
    return out

def mean_table(per_clip:dict, names) -> list:
    "The `postprocess_table` rows averaged over clips ({clip: rows}), one per row name in `names`."
    cols = [m for m in next(iter(per_clip.values()))[0] if m != 'name']
    return [dict(name=k, **{m: float(np.mean([next(x for x in rows if x['name'] == k)[m] for rows in per_clip.values()])) for m in cols})
            for k in names]

def run(frames=40, table_frames=24, clips=None):
    folders = clip_folders(clips)
    seg, tab, timing, cpu = {}, {}, {}, {}
    segment_person(np.zeros((8, 8, 3), np.uint8)); segment_person(np.zeros((8, 8, 3), np.uint8), 1)   # create both models
    for d in folders:
        c, fr, crops, masks, boxes = load(d, max(frames, table_frames))
        seg[d.name] = segmentation_variants(fr[:frames], crops[:frames], masks[:frames], boxes[:frames])
        n = min(table_frames, len(fr))
        gen = simulate_generated(crops[:n], masks[:n], gain=(1.05, 1.0, 0.96), offset=(8, -5, 3), ramp=(0, 6, -6))
        tab[d.name] = postprocess_table(fr[:n], gen, boxes[:n], masks[:n])
        key = f"{fr.shape[2]}x{fr.shape[1]}"
        paste_back_frames(fr[:1], gen[:1], boxes[:1], masks[:1])
        t, c0 = time.perf_counter(), time.process_time(); paste_back_frames(fr[:n], gen, boxes[:n], masks[:n])
        timing.setdefault(key, []).append((time.perf_counter() - t)/n*1000); cpu.setdefault(key, []).append((time.process_time() - c0)/n*1000)
        r = {x['name']: x for x in tab[d.name]}
        print(f"{d.name:24s} {key:>10s}  psnr {r['w/o post-processing']['psnr']:.2f} -> {r['full']['psnr']:.2f}  "
              f"outline mae {r['w/o post-processing']['outline_mae']:.2f} -> {r['full']['outline_mae']:.2f}  "
              f"{timing[key][-1]:.0f} ms/frame ({cpu[key][-1]:.0f} ms CPU)", flush=True)
    variants = list(next(iter(seg.values())))
    seg_mean = {v: {m: float(np.mean([seg[c][v][m] for c in seg])) for m in ('face_recall', 'flicker', 'agreement', 'ms')}
                | dict(worst_face_recall=float(min(seg[c][v]['face_recall'] for c in seg)),
                       worst_clip=min(seg, key=lambda c: seg[c][v]['face_recall'])) for v in variants}
    mean_rows = mean_table(tab, POSTPROCESS_ROWS)
    res = dict(what='dfe.postprocess on the cropped corpus (segmentation choice, Table 4 analog on simulated generated crops, time)',
               clips=[d.name for d in folders], frames=frames, table_frames=table_frames, crop_size=int(crops.shape[1]),
               segmentation=dict(mean=seg_mean, per_clip=seg), table=dict(mean=mean_rows, per_clip=tab),
               ms_per_frame={k: float(np.mean(v)) for k, v in timing.items()}, cpu_ms_per_frame={k: float(np.mean(v)) for k, v in cpu.items()},
               load_average=list(os.getloadavg()),
               machine=dict(python=platform.python_version(), processor=platform.processor() or platform.machine()),
               created=time.strftime('%Y-%m-%dT%H:%M:%S'))
    return res

def held_out_frames(sl, count:int):
    "Full-resolution frames [start, stop) of a clip slice, decoded from its source video."
    from dfe.io import iter_frames
    start, stop = getattr(sl, 'start', 0), getattr(sl, 'stop', len(sl))
    fr = [f for i, f in enumerate(iter_frames(sl.manifest['source'], fps=sl.manifest['fps'], count=stop)) if i >= start]
    return np.stack(fr[:count])

# the rows, plus the full chain with the earlier paste region (lower face + mouth dilated by S/16, feathered S/16,
# not eroded): it includes the line the generator leaves at the edge of its input mask
RENDERER_ROWS = dict(POSTPROCESS_ROWS, **{'full, region dilated (old)': dict(keep_background=True, region='mask', colour_match=True,
                                                                           region_parts=('lower_face', 'mouth'), dilate=1/16, feather=1/16)})

def run_renderers(runs:list, max_frames:int=0) -> dict:
    "Table 4 analog on the held-out frames each trained renderer re-enacts."
    from dfe.evaluate import evaluation_clips
    from dfe.train import load_renderer, render_clip
    per, out_rows = {}, []
    for run in map(Path, runs):
        R = load_renderer(run)
        for sl in evaluation_clips(run):
            pred = render_clip(R, sl, actor=sl.identity)
            n = len(pred) if max_frames <= 0 else min(max_frames, len(pred))
            fr = held_out_frames(sl, n)
            tab = postprocess_table(fr, pred[:n], sl.params['boxes'][:n], np.asarray(sl.masks[:n]), rows=RENDERER_ROWS)
            key = f"{run.parent.name}/{run.name}:{sl.clip}[{getattr(sl, 'start', 0)}:{getattr(sl, 'start', 0) + n}]"
            per[key] = tab
            r = {x['name']: x for x in tab}
            print(f"{key}  psnr {r['w/o post-processing']['psnr']:.2f} -> {r['full']['psnr']:.2f}  outline mae "
                  f"{r['w/o post-processing']['outline_mae']:.2f} -> {r['full']['outline_mae']:.2f}", flush=True)
    mean_rows = mean_table(per, RENDERER_ROWS)
    return dict(what="Table 4 analog (post-processing off/on) on trained renderers' re-enactment of held-out frames",
                runs=[str(r) for r in runs], table=dict(mean=mean_rows, per_clip=per), created=time.strftime('%Y-%m-%dT%H:%M:%S'))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', default='', help="comma-separated training run folders: the table on their held-out re-enactments")
    ap.add_argument('--max-frames', type=int, default=0, help='with --runs: at most this many held-out frames per clip (0: all)')
    ap.add_argument('--frames', type=int, default=40, help='frames per clip for the segmentation comparison')
    ap.add_argument('--table-frames', type=int, default=24, help='frames per clip for the table')
    ap.add_argument('--clips', default='', help='comma-separated clip names (default: all folders in outputs/crop)')
    a = ap.parse_args()
    if a.runs:
        res = run_renderers([r for r in a.runs.split(',') if r], a.max_frames)
        out = outputs_dir()/'bench'/'postprocess_renderer.json'
        atomic_write_json(out, res)
        print(table_markdown(res['table']['mean'])); print(f"wrote {out}")
        raise SystemExit(0)
    res = run(a.frames, a.table_frames, [c for c in a.clips.split(',') if c] or None)
    out = outputs_dir()/'bench'/'postprocess.json'
    atomic_write_json(out, res)
    print('\nsegmentation (mean over clips): face recall / worst / flicker / agreement / ms')
    for v, r in res['segmentation']['mean'].items():
        print(f"  {v:22s} {r['face_recall']:.4f} {r['worst_face_recall']:.3f} ({r['worst_clip']}) {r['flicker']:.4f} {r['agreement']:.4f} {r['ms']:.1f}")
    print(f"\nTable 4 analog, mean over {len(res['clips'])} clips ({a.table_frames} frames each, simulated generated crops):")
    print(table_markdown(res['table']['mean']))
    print('\nms per frame (wall):', {k: round(v, 1) for k, v in res['ms_per_frame'].items()})
    print('ms per frame (CPU): ', {k: round(v, 1) for k, v in res['cpu_ms_per_frame'].items()}, 'load average', res['load_average'])
    print(f"wrote {out}")
