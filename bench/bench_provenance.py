"""Benchmark of dfe.provenance: is the watermark invisible, robust, and free of false positives?

For every clip of the corpus (first --frames frames):
  * unmarked: the watermark score with dfe's key, and with --null-keys other keys (the null distribution that
    sets the detection threshold); none may be flagged;
  * marked as dfe writes its outputs (MarkedVideoWriter, CRF 18): PSNR of the marked frames, the score of the
    output, then of second-generation copies without tags: re-encoded at CRF 28 and 35, rescaled to half
    size and re-encoded at CRF 28, and a 1 s trim of the CRF 28 copy; whether `verify_video` flags each.
Also embedding and detection speed at 256², 512² and 1080x1920, and the time `dfe verify` takes on a file.
Prints a table and writes outputs/bench/provenance.json (atomically).

    python bench/bench_provenance.py [--clips ID ...] [--frames 100] [--null-keys 200]     (or: dfe bench provenance)
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path
import numpy as np
import cv2

from dfe.core import outputs_dir, atomic_write_json
from dfe.data import load_manifest
from dfe.io import read_frames, write_video
from dfe.provenance import (embed_watermark, detect_watermark, canonical_luma, watermark_score, marking_psnr,
                            write_marked_video, verify_video, DETECTION_THRESHOLD, DEFAULT_STRENGTH, WATERMARK_GRID)
import av


def half(frames):
    "Frames scaled to half size (even sides), as a re-upload at a lower resolution would be."
    h, w = frames.shape[1:3]
    W, H = max(2, w//2//2*2), max(2, h//2//2*2)
    return np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in frames])


def speed(size, n=8, reps=3):
    "Embedding and detection (canonical luma + score) frames per second on random smooth frames of `size` (w, h)."
    w, h = size
    rng = np.random.default_rng(0)
    f = cv2.resize(rng.integers(0, 256, (h//8, w//8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    frames = np.repeat(f[None], n, 0)
    embed_watermark(frames[:1])  # warm the pattern cache
    te = min(timeit(lambda: embed_watermark(frames)) for _ in range(reps))
    td = min(timeit(lambda: watermark_score(canonical_luma(frames).sum(0))) for _ in range(reps))
    return dict(width=w, height=h, embed_frames_per_second=n/te, embed_ms_per_frame=1000*te/n,
                detect_frames_per_second=n/td, detect_ms_per_frame=1000*td/n)


def timeit(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--clips', nargs='*', help='clip ids (default: all)')
    ap.add_argument('--frames', type=int, default=100, help='frames per clip (from the start; verify reads 100)')
    ap.add_argument('--null-keys', type=int, default=200, help='other keys scored on each unmarked clip')
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    clips = [c for c in load_manifest() if not args.clips or c.id in args.clips]
    res = dict(machine=dict(python=sys.version.split()[0], pyav=av.__version__, opencv=cv2.__version__,
                            platform=platform.platform(), cpus=os.cpu_count(),
                            load_before=os.getloadavg()[0]),
               threshold=DETECTION_THRESHOLD, strength=DEFAULT_STRENGTH, grid=WATERMARK_GRID, frames=args.frames)

    res['speed'] = [speed(s) for s in ((256, 256), (512, 512), (1080, 1920))]
    for s in res['speed']:
        print(f"speed {s['width']}x{s['height']}: embed {s['embed_ms_per_frame']:.1f} ms/frame, "
              f"detect {s['detect_ms_per_frame']:.2f} ms/frame")

    conds = ('output_crf18', 'crf28', 'crf35', 'half_crf28', 'trim1s_crf28')
    print(f"\n{'clip':22s}{'size':>10s}{'PSNR':>7s}{'unmarked':>9s}{'null max':>9s}" + ''.join(f'{c:>13s}' for c in conds))
    unmarked, marked, null_all = [], [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for c in clips:
            frames = read_frames(c.path, count=args.frames)
            # unmarked: dfe's key and the null keys on the same accumulated luma
            acc = canonical_luma(frames).mean(0)
            s0 = watermark_score(acc)
            nulls = [watermark_score(acc, key=f'null-{k}') for k in range(args.null_keys)]
            null_all += nulls
            unmarked.append(dict(id=c.id, width=c.width, height=c.height, frames=len(frames), score=s0,
                                 flagged=s0 > DETECTION_THRESHOLD, null_mean=float(np.mean(nulls)),
                                 null_std=float(np.std(nulls)), null_max=float(np.max(nulls))))
            # marked as dfe writes it, then re-encoded without tags
            t0 = time.perf_counter(); m = embed_watermark(frames); t_embed = time.perf_counter() - t0
            psnr = marking_psnr(frames, m)
            out = write_marked_video(d/'out.mp4', frames, crf=18)
            gen1 = read_frames(out)
            files = {'output_crf18': out,
                     'crf28': write_video(d/'crf28.mp4', gen1, crf=28),
                     'crf35': write_video(d/'crf35.mp4', gen1, crf=35),
                     'half_crf28': write_video(d/'half28.mp4', half(gen1), crf=28)}
            scores, flagged = {}, {}
            for k, p in files.items():
                t0 = time.perf_counter(); v = verify_video(p); tv = time.perf_counter() - t0
                scores[k], flagged[k] = v['watermark']['score'], v['synthetic']
                if k == 'crf28':
                    t_verify, tag_kept = tv, v['tag_found']
                    g = read_frames(p)
                    trim = g[len(g)//2:len(g)//2 + 25]
                    dt = detect_watermark(trim)
                    scores['trim1s_crf28'], flagged['trim1s_crf28'] = dt['score'], dt['detected']
            marked.append(dict(id=c.id, width=c.width, height=c.height, frames=len(frames), psnr=psnr,
                               embed_ms_per_frame=1000*t_embed/len(frames), scores=scores, detected=flagged,
                               verify_seconds_crf28=t_verify, tag_survives_reencode=tag_kept))
            print(f"{c.id:22s}{f'{c.width}x{c.height}':>10s}{psnr:7.1f}{s0:9.2f}{max(nulls):9.2f}"
                  + ''.join(f"{scores[k]:>11.1f}{'+' if flagged[k] else '-':>2s}" for k in conds), flush=True)

        # dfe verify on the biggest clip's own file (decoding dominates): unmarked, 100 frames
        big = max(clips, key=lambda c: c.width*c.height)
        t0 = time.perf_counter(); vb = verify_video(big.path); tb = time.perf_counter() - t0
        res['verify_time'] = dict(clip=big.id, width=big.width, height=big.height, seconds=tb,
                                  frames=vb['watermark']['frames'], synthetic=vb['synthetic'])

    null_all = np.array(null_all)
    res['null'] = dict(keys_per_clip=args.null_keys, n=len(null_all), mean=float(null_all.mean()),
                       std=float(null_all.std()), max=float(null_all.max()),
                       n_above_threshold=int((null_all > DETECTION_THRESHOLD).sum()),
                       n_above_4=int((null_all > 4).sum()), scores_other_keys=null_all.round(3).tolist())
    res['unmarked'], res['marked'] = unmarked, marked
    fp = [u['id'] for u in unmarked if u['flagged']]
    big_side = [m for m in marked if min(m['width'], m['height']) >= 256]
    res['summary'] = dict(
        clips=len(clips), false_positives_dfe_key=fp,
        unmarked_score_max=max(u['score'] for u in unmarked),
        psnr_min=min(m['psnr'] for m in marked), psnr_mean=float(np.mean([m['psnr'] for m in marked])),
        **{f'min_score_{k}': min(m['scores'][k] for m in marked) for k in conds},
        **{f'detected_{k}': f"{sum(m['detected'][k] for m in marked)}/{len(marked)}" for k in conds},
        **{f'detected_{k}_min_side_256': f"{sum(m['detected'][k] for m in big_side)}/{len(big_side)}" for k in conds},
        tag_survives_reencode=any(m['tag_survives_reencode'] for m in marked))
    print(f"\nnull (unmarked clips x {args.null_keys} keys): n={len(null_all)} mean {null_all.mean():.3f} "
          f"std {null_all.std():.3f} max {null_all.max():.2f}; above threshold {DETECTION_THRESHOLD}: "
          f"{res['null']['n_above_threshold']}")
    print(f"unmarked clips flagged with dfe's key: {len(fp)}/{len(unmarked)} {fp}")
    for k, v in res['summary'].items():
        if k.startswith(('min_score', 'detected', 'psnr')): print(f"  {k}: {v if isinstance(v, str) else round(v, 2)}")
    print(f"verify on {big.id} ({big.width}x{big.height}): {tb:.2f} s for {vb['watermark']['frames']} frames")
    res['machine']['load_after'] = os.getloadavg()[0]
    out = atomic_write_json(outputs_dir()/'bench'/'provenance.json', res)
    print(f"wrote {out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
