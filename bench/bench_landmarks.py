"""Landmark detection: speed (frames/s, frames already decoded) and steadiness (jitter) per backend.

  python bench/bench_landmarks.py [--frames 125] [--repeats 2]     (or: dfe bench landmarks)

Writes outputs/bench/landmarks.json. Speeds are the best of `--repeats` runs (other work on the machine only
slows a run down); `jitter` is `dfe.landmarks.landmark_jitter` (median second difference / inter-ocular
distance: lower is steadier), `valid` the fraction of frames with a face.
"""
import argparse, os, platform, time
import numpy as np
from dfe.core import data_dir, outputs_dir, atomic_write_json
from dfe.io import iter_frames
from dfe.landmarks import detect_landmarks, landmark_jitter

CONFIGS = {  # name: detect_landmarks arguments
    'landmarker':                 dict(backend='landmarker'),
    'landmarker_no_blendshapes':  dict(backend='landmarker', with_blendshapes=False),
    'landmarker_no_face_detector': dict(backend='landmarker', other_faces=False),
    'landmarker_num_faces_2':     dict(backend='landmarker', other_faces=False, max_faces=2),
    'facemesh':                   dict(backend='facemesh'),
    'facemesh_no_face_detector':  dict(backend='facemesh', other_faces=False),
    'facemesh_num_faces_2':       dict(backend='facemesh', other_faces=False, max_faces=2),
}
SPEED_CLIPS = {'512': 'clips/hdtf_katiehill_000.mp4', '224': 'clips/vox_a.mp4'}
JITTER_CLIPS = ['clips/hdtf_katiehill_000.mp4', 'clips/vox_a.mp4', 'clips/vr_face5.mp4', 'clips/vox_c_2.mp4', 'clips/latentsync_demo3.mp4']

def run(frames, repeats, **kw):
    best, track = 0., None
    for _ in range(repeats):
        t0 = time.perf_counter(); track = detect_landmarks(frames, **kw); dt = time.perf_counter() - t0
        best = max(best, len(frames)/dt)
    return best, track

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=125, help='frames per clip (at 25 fps)')
    ap.add_argument('--repeats', type=int, default=2, help='timed runs per measurement (the best is kept)')
    a = ap.parse_args()
    res = dict(frames_per_clip=a.frames, repeats=a.repeats, cpu_count=os.cpu_count(), platform=platform.platform(),
               load_average_at_start=os.getloadavg(), fps={}, jitter={}, valid={})
    for size, clip in SPEED_CLIPS.items():
        frames = list(iter_frames(data_dir()/clip, fps=25.0, count=a.frames))
        for name, kw in CONFIGS.items():
            fps, tr = run(frames, a.repeats, **kw)
            res['fps'].setdefault(name, {})[size] = round(fps, 1)
            print(f"{size}² {name:28s} {fps:6.1f} frames/s  jitter {landmark_jitter(tr):.4f}", flush=True)
    for clip in JITTER_CLIPS:
        frames = list(iter_frames(data_dir()/clip, fps=25.0, count=a.frames))
        for name in ['landmarker', 'landmarker_num_faces_2', 'facemesh']:
            _, tr = run(frames, 1, **CONFIGS[name])
            res['jitter'].setdefault(name, {})[clip] = round(landmark_jitter(tr), 5)
            res['valid'].setdefault(name, {})[clip] = round(float(tr.valid.mean()), 4)
            print(f"{clip:32s} {name:24s} jitter {landmark_jitter(tr):.4f}  valid {tr.valid.mean():.3f}", flush=True)
    for name in res['jitter']: res['jitter'][name]['median'] = round(float(np.median(list(res['jitter'][name].values()))), 5)
    res['load_average_at_end'] = os.getloadavg()
    out = atomic_write_json(outputs_dir()/'bench'/'landmarks.json', res)
    print(f"wrote {out}")

if __name__ == '__main__': main()
