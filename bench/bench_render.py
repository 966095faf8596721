"""CPU speed of the differentiable renderer (dfe.render) on the ICT-FaceKit face and mouth interior at 256².

One iteration is what a photometric tracking step does: rasterize, interpolate UVs (per corner) and normals,
sample a 256² RGB texture, SH shading, masked L1 loss against a target image, backward to the vertices, the
texture and the lighting. Timed per frame for B=1 and B=8 with torch.set_num_threads(2).
Target (issue): <= 60 ms forward+backward per 256² frame.

    .venv/bin/python bench/bench_render.py [--iters 20] [--threads 2] [--wait-quiet 600]

Writes outputs/bench/render.json (atomically) and prints a table. Times are wall-clock medians (and minima) per
frame, and process CPU time per frame. On a shared machine other processes distort wall-clock times badly (torch's
OpenMP threads spin-wait by default, so an oversubscribed CPU can make 2 threads many times slower than 1): the
load average before and after is recorded, and --wait-quiet waits (up to that many seconds) for a quiet machine.
"""
from __future__ import annotations
import argparse, os, platform, time
import numpy as np
import torch
from dfe.core import outputs_dir, shared_dir, check_input_file, atomic_write_json
from dfe.render import (split_quads, transform_points, camera_to_screen, rasterize, interpolate, sample_texture,
                        vertex_normals, sh_shading, ambient_sh_coeffs)

PARTS = ('face', 'mouth_socket', 'gums_and_tongue', 'teeth')
TARGET_MS = 60.0

def load_mesh(path=None, parts=PARTS):
    "Neutral ICT mesh, triangles whose vertices are all in `parts`, per-corner UVs (UDIM tiles 0..3 packed into [0, 1])."
    path = check_input_file(path or shared_dir()/'assets'/'ict_facekit.npz')
    d = np.load(path)
    ranges = dict(zip(d['part_names'].tolist(), d['part_ranges'].tolist()))
    keep = np.zeros(len(d['neutral']), bool)
    for p in parts: keep[ranges[p][0]:ranges[p][1] + 1] = True
    tri, tri_uv = split_quads(d['faces'], d['faces_uv'])
    m = keep[tri].all(1)
    uv = d['uv'][tri_uv[m]]                      # (F, 3, 2)
    uv = np.stack([uv[..., 0]/4, uv[..., 1]], -1)  # tiles u in [0, 4) -> one atlas
    a, b = ranges['narrow_face']
    return (torch.tensor(d['neutral']), torch.tensor(tri[m], dtype=torch.long), torch.tensor(uv, dtype=torch.float32),
            d['neutral'][a:b + 1])

def frontal_pose(narrow_face, size=256, fill=0.7, focal=None):
    "R, t, focal, principal that put the narrow face (forehead to chin) over `fill` of the frame height, centred."
    focal = focal or 2.0*size
    R = torch.diag(torch.tensor([1., -1., -1.]))
    cam = narrow_face @ R.numpy().T
    lo, hi = cam.min(0), cam.max(0)
    dist = focal*(hi[1] - lo[1])/(fill*size) - lo[2]      # nearest point of the face at that depth
    t = torch.tensor([-(lo[0] + hi[0])/2, -(lo[1] + hi[1])/2, dist], dtype=torch.float32)
    return R, t, focal, torch.tensor([size/2, size/2])

def make_step(verts, faces, uv_corners, R, t, focal, principal, B, size, cull):
    g = torch.Generator().manual_seed(0)
    tex0 = torch.rand(B, 3, size, size, generator=g)
    target = torch.rand(B, 3, size, size, generator=g)
    v0 = verts[None].expand(B, -1, -1).contiguous()
    Rb, tb = R[None].expand(B, 3, 3), t[None].expand(B, 3)
    pp = principal[None].expand(B, 2)
    def step():
        offs = torch.zeros(B, 1, 3, requires_grad=True)          # stands in for the model parameters
        tex = tex0.clone().requires_grad_(True)
        sh = ambient_sh_coeffs(B).requires_grad_(True)
        t0, c0 = time.perf_counter(), time.process_time()
        cam = transform_points(v0 + offs, Rb, tb)
        frags = rasterize(camera_to_screen(cam, focal, pp), faces, (size, size), cull_backfaces=cull)
        t1 = time.perf_counter()
        uv = interpolate(uv_corners, frags)
        nrm = interpolate(vertex_normals(cam, faces), frags, faces)
        img = sample_texture(tex, uv, frags.mask)*sh_shading(nrm, sh).permute(0, 3, 1, 2)
        loss = ((img - target).abs()*frags.mask[:, None]).sum()/frags.mask.sum().clamp(min=1)
        t2 = time.perf_counter()
        loss.backward()
        t3, c3 = time.perf_counter(), time.process_time()
        return dict(rasterize=t1 - t0, forward=t2 - t0, backward=t3 - t2, total=t3 - t0, cpu=c3 - c0,
                    coverage=frags.mask.float().mean().item())
    return step

def wait_quiet(timeout:float, below:float=0.5) -> float:
    "Wait up to `timeout` s for the 1-minute load average to drop below `below`; returns the load average at the end."
    t0 = time.time()
    while os.getloadavg()[0] >= below and time.time() - t0 < timeout: time.sleep(5)
    return os.getloadavg()[0]

def run(iters=20, threads=2, size=256, batches=(1, 8), cull=True):
    torch.set_num_threads(threads)
    verts, faces, uv_corners, narrow = load_mesh()
    R, t, focal, principal = frontal_pose(narrow, size)
    rows, load0 = [], os.getloadavg()
    for B in batches:
        step = make_step(verts, faces, uv_corners, R, t, focal, principal, B, size, cull)
        for _ in range(3): step()                                  # warm up
        rs = [step() for _ in range(max(3, iters//B))]
        med = {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
        low = {k: float(np.min([r[k] for r in rs])) for k in rs[0]}
        rows.append(dict(batch=B, iters=len(rs), coverage=med['coverage'],
                         **{f'{k}_ms_per_frame': 1000*med[k]/B for k in ('rasterize', 'forward', 'backward', 'total')},
                         min_total_ms_per_frame=1000*low['total']/B, cpu_ms_per_frame=1000*med['cpu']/B))
    return dict(what='dfe.render forward+backward per 256x256 frame: ICT face + mouth interior, UV texture, SH shading, L1',
                image_size=size, triangles=int(faces.shape[0]), vertices=int(verts.shape[0]), cull_backfaces=cull,
                threads=threads, torch=torch.__version__, machine=platform.machine(), cpus=os.cpu_count(),
                omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'), loadavg_before=load0, loadavg_after=os.getloadavg(),
                target_ms_per_frame=TARGET_MS, rows=rows,
                meets_target=all(r['total_ms_per_frame'] <= TARGET_MS for r in rows))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--iters', type=int, default=20, help='timed iterations at B=1 (fewer at bigger batches)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-cull', action='store_true', help='do not cull back-facing triangles')
    ap.add_argument('--wait-quiet', type=float, default=0, metavar='S', help='first wait up to S seconds for load average < 0.5')
    a = ap.parse_args(argv)
    if a.wait_quiet: wait_quiet(a.wait_quiet)
    res = run(a.iters, a.threads, cull=not a.no_cull)
    out = atomic_write_json(outputs_dir()/'bench'/'render.json', res)
    print(f"{res['triangles']} triangles, {res['image_size']}², {res['threads']} threads, cull_backfaces={res['cull_backfaces']}, "
          f"load average {res['loadavg_before'][0]:.1f} -> {res['loadavg_after'][0]:.1f} on {res['cpus']} CPUs")
    print(f"{'B':>3} {'cover':>6} {'raster':>8} {'forward':>8} {'backward':>9} {'total':>8} {'min':>7} {'cpu':>7}   ms per frame (median; min; CPU time)")
    for r in res['rows']:
        print(f"{r['batch']:>3} {r['coverage']:6.2f} {r['rasterize_ms_per_frame']:8.1f} {r['forward_ms_per_frame']:8.1f} "
              f"{r['backward_ms_per_frame']:9.1f} {r['total_ms_per_frame']:8.1f} {r['min_total_ms_per_frame']:7.1f} {r['cpu_ms_per_frame']:7.1f}")
    print(f"target <= {TARGET_MS:.0f} ms/frame (median): {'met' if res['meets_target'] else 'NOT met'}; wrote {out}")
    if res['loadavg_before'][0] > res['threads'] or res['loadavg_after'][0] > res['threads'] + 1:
        print("warning: the machine was busy; wall-clock times are inflated (see the CPU column, or use --wait-quiet)")
    return res

if __name__ == '__main__': main()
