"""Face model: forward/backward speed, and how well the MediaPipe landmark embedding explains real detections.

  python bench/bench_facemodel.py [--every 40] [--frames-per-clip 4] [--steps 300]

Writes outputs/bench/facemodel.json.
- `speed`: FaceModel forward (+ landmarks) and backward, ms per call for batches of 1 and 16 frames (best of 5).
- `embedding`: for each embedding variant, the mean per-region residual (in % of the inter-ocular distance) of a
  landmark-only fit (identity 40 modes, 53 expressions, pose; Adam, `--steps` steps from MediaPipe's pose and
  blendshapes) to MediaPipe's 468 mesh landmarks on every `--every`-th frame of 5 clips. Variants: `final` (the
  cached embedding: similarity + non-rigid ICP + projection), `rigid_only` (similarity-aligned canonical points
  projected on the surface), `no_anchor` (non-rigid ICP without the 14 anchor correspondences).
"""
import argparse, os, platform, time
import numpy as np, torch
from dfe.core import data_dir, outputs_dir, atomic_write_json
from dfe.facemodel import (load_face_model, read_ict_model, compute_mediapipe_embedding, mediapipe_embedding, select_submesh,
                           FaceModel, MEDIAPIPE_REGIONS, landmark_fit_residual)
from dfe.landmarks import load_mediapipe_canonical, landmarker_model_path

CLIPS = ['hdtf_katiehill_000', 'hdtf_aoc_000', 'hdtf_edmarkey_000', 'vox_c_1', 'styletalk_andrew_1']
REGIONS = {'lips': MEDIAPIPE_REGIONS['lips_outer'] + MEDIAPIPE_REGIONS['lips_inner_upper'] + MEDIAPIPE_REGIONS['lips_inner_lower'],
           'eyes': MEDIAPIPE_REGIONS['eye_left'] + MEDIAPIPE_REGIONS['eye_right'], 'brows': MEDIAPIPE_REGIONS['brow_left'] + MEDIAPIPE_REGIONS['brow_right'],
           'nose': MEDIAPIPE_REGIONS['nose'], 'contour': MEDIAPIPE_REGIONS['contour'], 'all_468': tuple(range(468))}

def best_ms(f, n=5):
    f(); ts = []
    for _ in range(n): t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return round(1000*min(ts), 2)

def speed():
    m = load_face_model(device='cpu')
    out = {}
    for B in (1, 16):
        p = [torch.randn(B, 100), torch.rand(B, 53), 0.1*torch.randn(B, 3), torch.tensor([[0., 0, 60]]*B)]
        with torch.no_grad(): out[f'forward_B{B}'] = best_ms(lambda: m.landmarks_from_vertices(m(*p)))
        q = [x.clone().requires_grad_() for x in p]
        def fb():
            v = m(*q); (v.square().mean() + m.landmarks_from_vertices(v).square().mean()).backward()
        out[f'forward_backward_B{B}'] = best_ms(fb)
        print(f"B={B}: forward {out[f'forward_B{B}']} ms, forward+backward {out[f'forward_backward_B{B}']} ms", flush=True)
    return dict(ms=out, n_vertices=m.n_vertices, parts=list(m.part_names))

def detections(every, per_clip):
    import av, mediapipe as mp
    from mediapipe.tasks.python import vision, BaseOptions
    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(landmarker_model_path(required=True))),
                                        output_face_blendshapes=True, output_facial_transformation_matrixes=True, num_faces=1)
    out = []
    with vision.FaceLandmarker.create_from_options(opts) as lmk:
        for clip in CLIPS:
            n = 0
            with av.open(str(data_dir()/'clips'/f'{clip}.mp4')) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i % every: continue
                    img = f.to_ndarray(format='rgb24')
                    r = lmk.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
                    if r.face_landmarks:
                        H, W = img.shape[:2]
                        out.append((np.array([[p.x*W, p.y*H] for p in r.face_landmarks[0]], np.float32), np.array(r.facial_transformation_matrixes[0]),
                                    np.array([[b.score for b in r.face_blendshapes[0]]], np.float32), (H, W)))
                        n += 1
                    if n >= per_clip: break
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--every', type=int, default=40); ap.add_argument('--frames-per-clip', type=int, default=4)
    ap.add_argument('--steps', type=int, default=300)
    a = ap.parse_args()
    torch.manual_seed(0)
    res = dict(cpu_count=os.cpu_count(), platform=platform.platform(), torch=torch.__version__, speed=speed())
    dets = detections(a.every, a.frames_per_clip)
    ict, (cv, cf) = read_ict_model(), load_mediapipe_canonical()
    variants = {'final': mediapipe_embedding(), 'rigid_only': compute_mediapipe_embedding(ict, cv, cf, stiffness=()),
                'no_anchor': compute_mediapipe_embedding(ict, cv, cf, anchor_weight=0.0)}
    s = select_submesh(ict, ('face',)); v = s['vertex_ids']
    res['embedding'] = dict(frames=len(dets), clips=CLIPS, every=a.every, steps=a.steps, unit='% of inter-ocular distance (33-263)', regions={})
    for name, emb in variants.items():
        m = FaceModel(ict['neutral'][v], ict['identity_basis'][:40, v], ict['expression_basis'][:, v], s['faces'], s['faces_uv'],
                      ict['uv'][s['uv_ids']], s['face_part'], s['part_names'], ict['expression_names'], v, s['triangle_ids'],
                      np.full(68, -1), embedding=emb)
        R = np.array([landmark_fit_residual(m, *d, steps=a.steps)/np.linalg.norm(d[0][263] - d[0][33])*100 for d in dets])
        res['embedding']['regions'][name] = {k: round(float(R[:, list(ids)].mean()), 3) for k, ids in REGIONS.items()}
        print(f"{name:11s}", '  '.join(f"{k} {x:.2f}" for k, x in res['embedding']['regions'][name].items()), flush=True)
    emb = variants['final']
    res['embedding']['residual_cm'] = {k: dict(rigid_mean=round(float(np.nanmean(emb['residual_rigid'][list(ids)])), 3),
                                               rigid_max=round(float(np.nanmax(emb['residual_rigid'][list(ids)])), 3))
                                       for k, ids in REGIONS.items()}
    out = atomic_write_json(outputs_dir()/'bench'/'facemodel.json', res)
    print(f"wrote {out}")

if __name__ == '__main__': main()
