"Heavier tests of dfe.render: a brute-force reference rasteriser, gradients of the whole pipeline, the ICT mesh, devices."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dfe.core import shared_dir
from dfe.render import (axis_angle_to_matrix, matrix_to_axis_angle, transform_points, project_points, camera_to_screen,
                        rasterize, interpolate, sample_texture, vertex_normals, face_normals, sh_basis, sh_shading,
                        ambient_sh_coeffs, directional_sh_coeffs, split_quads, Fragments)

ICT = shared_dir()/'assets'/'ict_facekit.npz'
needs_ict = pytest.mark.skipif(not ICT.exists(), reason=f"{ICT} not present")


def reference_raster(scr: np.ndarray, faces: np.ndarray, H: int, W: int):
    "Brute force in float64: per pixel, every triangle's barycentric margin and perspective depth. (H, W, F) arrays."
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    t = scr[faces]                                           # (F, 3, 3)
    x, y, z = t[..., 0], t[..., 1], t[..., 2]
    area = (x[:, 1] - x[:, 0])*(y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0])*(y[:, 1] - y[:, 0])
    def edge(a, b):
        return (x[:, b] - x[:, a])*(ii[..., None] - y[:, a]) - (y[:, b] - y[:, a])*(jj[..., None] - x[:, a])
    with np.errstate(divide='ignore', invalid='ignore'):
        b = np.stack([edge(1, 2), edge(2, 0), edge(0, 1)], -1)/area[:, None]    # (H, W, F, 3)
        depth = 1/(b/z[None, None]).sum(-1)
    valid = (z > 1e-3).all(1) & (area != 0)
    margin = np.where(valid, b.min(-1), -np.inf)
    return margin, np.where(margin >= 0, depth, np.inf)


def random_scene(seed, n=80, H=40, W=56):
    "Random triangles of mixed sizes and depths, some crossing the image border, a few behind the camera."
    g = np.random.default_rng(seed)
    c = g.uniform([-10, -10], [W + 10, H + 10], (n, 1, 2))
    r = g.choice([1.5, 3, 6, 15], n, p=[0.3, 0.3, 0.3, 0.1])[:, None, None]
    xy = c + g.normal(size=(n, 3, 2))*r
    z = g.uniform(2, 30, (n, 1)) + g.normal(size=(n, 3))*g.uniform(0, 3, (n, 1))
    z[:3] = g.uniform(-5, 0.5, (3, 3))                       # some vertices at or behind the camera
    scr = np.concatenate([xy, z[..., None]], -1).reshape(-1, 3)
    return scr, np.arange(3*n).reshape(n, 3)


@pytest.mark.parametrize('seed', range(6))
def test_matches_brute_force(seed):
    H, W = 40, 56
    scr, faces = random_scene(seed, H=H, W=W)
    fr = rasterize(torch.tensor(scr, dtype=torch.float32)[None], torch.tensor(faces), (H, W))
    margin, depth = reference_raster(scr, faces, H, W)
    best = depth.min(-1)
    covered = np.isfinite(best)
    fid = fr.face_id[0].numpy()
    # clear pixels: inside their nearest triangle by a margin and not near a depth tie -> exactly the same answer
    srt = np.sort(depth, -1)
    with np.errstate(invalid='ignore'):
        gap = srt[..., 1] - srt[..., 0]
    nearest_margin = np.take_along_axis(margin, depth.argmin(-1)[..., None], -1)[..., 0]
    clear = covered & (nearest_margin > 1e-4) & ~(gap <= 1e-3)
    clear_bg = margin.max(-1) < -1e-4
    assert clear.sum() > 100 and clear_bg.sum() > 100
    np.testing.assert_array_equal(fid[clear], depth.argmin(-1)[clear])
    assert (fid[clear_bg] == -1).all()
    np.testing.assert_allclose(fr.depth[0].numpy()[clear], best[clear], rtol=1e-4)
    # every covered pixel: the chosen triangle covers it (within the tolerance) and is no farther than the nearest
    m = fid >= 0
    chosen_margin = np.take_along_axis(margin, np.maximum(fid, 0)[..., None], -1)[..., 0]
    assert (chosen_margin[m] > -1e-4).all()
    assert (fr.depth[0].numpy()[m] <= best[m]*(1 + 1e-4)).all()
    assert (~m & covered & (nearest_margin > 1e-4)).sum() == 0      # no pixel clearly inside a triangle is missed


def test_rotated_square_coverage_equals_area():
    H = W = 96
    for ang in (0.1, 0.7, 1.2):
        c, s = math.cos(ang), math.sin(ang)
        corners = torch.tensor([[-1., -1], [1, -1], [1, 1], [-1, 1]]) @ torch.tensor([[c, -s], [s, c]]).T*30 + 48.3
        scr = torch.cat([corners, torch.full((4, 1), 7.)], -1)[None]
        fr = rasterize(scr, torch.tensor([[0, 1, 2], [0, 2, 3]]), (H, W))
        area, perimeter = 60.*60, 4*60.
        assert abs(fr.mask.sum().item() - area) < 0.5*perimeter/math.sqrt(2)   # boundary pixels only
        assert fr.face_id.unique().tolist() == [-1, 0, 1]


def test_gradients_of_the_whole_pipeline_match_finite_differences():
    "Camera-space vertices -> screen -> rasterize -> UV + normals -> texture * SH shading, in float64."
    torch.manual_seed(0)
    X = torch.tensor([[-3., -2., 20.], [3., -2.5, 22.], [3.5, 2., 21.], [-2.5, 2.5, 19.], [0.3, 0.2, 18.5]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    uv = torch.rand(5, 2, dtype=torch.float64)
    tex = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    sh = (ambient_sh_coeffs(1, dtype=torch.float64) + 0.1*torch.randn(1, 9, 3, dtype=torch.float64)).requires_grad_(True)
    X = X[None].clone().requires_grad_(True)
    def render(X, tex, sh):
        scr = camera_to_screen(X, 9.3, torch.tensor([[8.1, 6.2]], dtype=torch.float64))
        fr = rasterize(scr, faces, (12, 16))
        img = sample_texture(tex, interpolate(uv, fr, faces), fr.mask)
        return img*sh_shading(interpolate(vertex_normals(X, faces), fr, faces), sh).permute(0, 3, 1, 2)
    assert render(X, tex, sh).abs().sum() > 0
    assert torch.autograd.gradcheck(render, (X, tex, sh), eps=1e-7, atol=1e-5)


def test_depth_and_bary_gradients():
    scr = torch.tensor([[[1.3, 1.1, 4.], [10.7, 2.2, 6.], [3.1, 9.6, 9.]]], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[0, 1, 2]])
    assert torch.autograd.gradcheck(lambda v: rasterize(v, f, (11, 12)).depth, (scr,))
    assert torch.autograd.gradcheck(lambda v: rasterize(v, f, (11, 12)).bary, (scr,))
    fr = rasterize(scr, f, (11, 12))
    assert torch.autograd.gradcheck(lambda v: rasterize(v, f, (11, 12)).pix_bary, (scr,))
    assert fr.pix_face.eq(0).all() and fr.pix.numel() == fr.mask.sum()


def test_per_corner_and_batched_attributes_agree():
    g = torch.Generator().manual_seed(3)
    scr = torch.tensor(random_scene(1)[0], dtype=torch.float32)
    faces = torch.arange(scr.shape[0]).view(-1, 3)
    frames = torch.stack([scr, scr + torch.tensor([2.5, -1.5, 0.3])])
    fr = rasterize(frames, faces, (40, 56))
    a = torch.randn(2, scr.shape[0], 4, generator=g)
    per_vertex = interpolate(a, fr, faces)
    per_corner = interpolate(a[:, faces], fr)                 # (B, F, 3, C)
    torch.testing.assert_close(per_corner, per_vertex)
    torch.testing.assert_close(interpolate(a[0], fr, faces)[0], per_vertex[0])   # (V, C) shared by frames
    with pytest.raises(ValueError, match='per-corner'): interpolate(a[0, :5], fr)
    with pytest.raises(ValueError, match='rasterised'): interpolate(a[0], fr, faces[:3])


def test_axis_angle_round_trip_and_gradients():
    g = torch.Generator().manual_seed(0)
    axis = F.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.cat([torch.rand(190, generator=g, dtype=torch.float64)*math.pi, torch.tensor([0, 1e-9, 1e-5, 1e-3, math.pi - 1e-6, math.pi - 1e-3, 2.5, 3, 0.5, 1.0], dtype=torch.float64)])
    aa = axis*angle[:, None]
    R = axis_angle_to_matrix(aa)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-7, rtol=0)
    ok = angle < math.pi - 1e-3                     # away from the ±axis ambiguity at π
    torch.testing.assert_close(matrix_to_axis_angle(R)[ok], aa[ok], atol=1e-7, rtol=0)
    for a in (torch.zeros(1, 3), torch.tensor([[1e-4, 0, 2e-4]]), torch.tensor([[3.0, 0.1, 0]])):
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (a.double().requires_grad_(True),))
    x = torch.tensor([[0.2, -0.4, 0.3]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: matrix_to_axis_angle(axis_angle_to_matrix(v)), (x,))
    torch.manual_seed(1)
    r = torch.randn(64, 3, dtype=torch.float64)
    r = r/r.norm(dim=-1, keepdim=True)*torch.rand(64, 1, dtype=torch.float64)*3.1
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(r)), r)


def test_project_points_matches_pinhole():
    pts = torch.tensor([[[1., 2., 4.], [-3., 0.5, 10.]]])
    K = torch.tensor([[100., 0, 32.], [0, 120., 24.], [0, 0, 1.]])
    h = pts @ K.T
    torch.testing.assert_close(project_points(pts, torch.tensor([[100., 120.]]), torch.tensor([[32., 24.]])), h[..., :2]/h[..., 2:])


def test_sh_basis_constants():
    "Band 0 and 1 of the irradiance basis: the Lambertian-convolved SH of a unit normal."
    n = F.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    b = sh_basis(n)
    torch.testing.assert_close(b[:, 0], torch.full((100,), 1/math.sqrt(4*math.pi), dtype=torch.float64))
    torch.testing.assert_close(b[:, 1:4], n*math.sqrt(math.pi/3))   # (2π/3)·sqrt(3/4π)
    # a unit-irradiance light along +z has zero irradiance at normals facing -z with only bands 0+1 (clamped cosine approx.)
    sh = torch.zeros(1, 9, 1, dtype=torch.float64); sh[0, 0] = 1/b[0, 0]; sh[0, 3] = 1/math.sqrt(math.pi/3)
    torch.testing.assert_close(sh_shading(torch.tensor([[[0., 0., -1.], [0, 0, 1]]], dtype=torch.float64), sh)[0, :, 0],
                               torch.tensor([0., 2.], dtype=torch.float64))


def test_bad_inputs():
    v = torch.rand(1, 4, 3) + torch.tensor([0, 0, 1.])
    with pytest.raises(ValueError, match='outside'): rasterize(v, torch.tensor([[0, 1, 4]]), (8, 8))
    with pytest.raises(ValueError, match=r'\(B, V, 3\)'): rasterize(v[0], torch.tensor([[0, 1, 2]]), (8, 8))
    with pytest.raises(ValueError, match='integer'): rasterize(v, torch.tensor([[0., 1, 2]]), (8, 8))
    with pytest.raises(ValueError, match='image_size'): rasterize(v, torch.tensor([[0, 1, 2]]), (0, 8))
    with pytest.raises(ValueError, match='texture'): sample_texture(torch.rand(3, 4, 4), torch.rand(1, 2, 2, 2))


def test_huge_triangle_in_bounded_memory():
    scr = torch.tensor([[[-1e4, -1e4, 10.], [3e4, -1e4, 10.], [-1e4, 3e4, 10.]]])
    fr = rasterize(scr, torch.tensor([[0, 1, 2]]), (1024, 1536), max_candidates=1 << 16)
    assert fr.mask.all()
    torch.testing.assert_close(fr.depth, torch.full((1, 1024, 1536), 10.))


def load_ict(parts=('face', 'mouth_socket', 'gums_and_tongue', 'teeth')):
    d = np.load(ICT)
    ranges = dict(zip(d['part_names'].tolist(), d['part_ranges'].tolist()))
    keep = np.zeros(len(d['neutral']), bool)
    for p in parts: keep[ranges[p][0]:ranges[p][1] + 1] = True
    tri, tri_uv = split_quads(d['faces'], d['faces_uv'])
    m = keep[tri].all(1)
    uv = torch.from_numpy(d['uv'])[torch.from_numpy(tri_uv[m]).long()]
    uv[..., 0] -= uv[..., 0].mean(1, keepdim=True).floor()
    v = torch.from_numpy(d['neutral'])
    return v - v[torch.from_numpy(keep)].mean(0), torch.from_numpy(tri[m]).long(), uv


def ict_screen(v, aa, t, size=128, focal=300.):
    R = torch.diag(torch.tensor([1., -1., -1.]))[None] @ axis_angle_to_matrix(aa)
    cam = transform_points(v[None].expand(aa.shape[0], -1, -1), R, t)
    return cam, camera_to_screen(cam, focal, torch.tensor([[size/2, size/2]]).expand(aa.shape[0], 2))


@needs_ict
def test_ict_batch_equals_single_frames_and_culling():
    v, faces, _ = load_ict()
    aa = torch.tensor([[0., 0., 0.], [0.1, 0.6, 0.], [-0.2, -0.4, 0.1]])
    t = torch.tensor([[0., 0., 60.], [1., -2., 70.], [-2., 1., 55.]])
    cam, scr = ict_screen(v, aa, t)
    fr = rasterize(scr, faces, (128, 128))
    frc = rasterize(scr, faces, (128, 128), cull_backfaces=True)
    for i in range(3):
        one = rasterize(scr[i:i + 1], faces, (128, 128))
        assert torch.equal(one.face_id[0], fr.face_id[i])
        torch.testing.assert_close(one.bary[0], fr.bary[i])
    assert fr.mask.float().mean() > 0.1
    # with culling every visible triangle faces the camera; where the unculled winner faces it, the answers agree
    n = face_normals(cam, faces)
    front = (n*cam[:, faces].mean(2)).sum(-1) < 0                      # normal against the viewing ray
    vis = frc.face_id.clamp(min=0)
    assert torch.gather(front, 1, vis.view(3, -1)).view_as(vis)[frc.mask].all()
    fr_front = torch.gather(front, 1, fr.face_id.clamp(min=0).view(3, -1)).view_as(vis) & fr.mask
    assert torch.equal(fr.face_id[fr_front], frc.face_id[fr_front])
    assert fr_front.sum() > 0.97*fr.mask.sum()


@needs_ict
def test_ict_pose_fit_by_photometric_loss():
    "What the tracker does, in miniature: Adam through the renderer recovers a perturbed pose."
    torch.manual_seed(0)
    v, faces, uv = load_ict(('face', 'head_and_neck', 'eyeball_left', 'eyeball_right'))
    u = torch.linspace(0, 1, 64)
    tex = torch.stack([0.3 + 0.6*u[None].expand(64, 64), 0.3 + 0.6*u[:, None].expand(64, 64),
                       0.5 + 0.3*torch.sin(6*u[None] + 4*u[:, None])])[None]
    sh = directional_sh_coeffs(torch.tensor([-0.3, -0.3, -0.9]))
    def render(aa, t):
        cam, scr = ict_screen(v, aa, t, 112, 200.)
        fr = rasterize(scr, faces, (112, 112), cull_backfaces=True)
        shade = sh_shading(interpolate(vertex_normals(cam, faces), fr, faces), sh).permute(0, 3, 1, 2)
        return sample_texture(tex, interpolate(uv, fr), fr.mask)*shade, fr
    aa0, t0 = torch.tensor([[0.1, 0.4, 0.]]), torch.tensor([[0., 0., 70.]])
    target, _ = render(aa0, t0)
    daa = torch.tensor([[0.03, -0.05, 0.02]], requires_grad=True)
    dt = torch.tensor([[0.8, -0.5, 0.2]], requires_grad=True)
    opt = torch.optim.Adam([{'params': [daa], 'lr': 0.005}, {'params': [dt], 'lr': 0.05}])
    losses = []
    for _ in range(50):
        img, fr = render(aa0 + daa, t0 + dt*torch.tensor([1., 1., 10.]))
        loss = (img - target).abs().sum(1)[fr.mask].mean()
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]/10
    assert daa.norm() < 0.2*0.0616 and dt[0, :2].norm() < 0.2*0.943


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    scr, faces = random_scene(4)
    scr, faces = torch.tensor(scr, dtype=torch.float32)[None], torch.tensor(faces)
    attrs = torch.randn(scr.shape[1], 3)
    cpu = rasterize(scr, faces, (40, 56))
    gpu = rasterize(scr.cuda(), faces.cuda(), (40, 56))
    assert torch.equal(gpu.face_id.cpu(), cpu.face_id)
    torch.testing.assert_close(interpolate(attrs.cuda(), gpu, faces.cuda()).cpu(), interpolate(attrs, cpu, faces))
    tex = torch.rand(1, 3, 16, 16)
    uv = torch.rand(1, 40, 56, 2)
    torch.testing.assert_close(sample_texture(tex.cuda(), uv.cuda()).cpu(), sample_texture(tex, uv))
