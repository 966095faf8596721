"""Tests of dfe.io: bad inputs, frame-rate resampling, rotation, audio decoding, writer round trip and atomicity,
and every clip of the corpus. Small media files are generated with PyAV into tmp_path."""
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dfe.core import InputFileError, DfeError, data_dir
from dfe.data import load_manifest
from dfe.io import (MediaError, NoVideoStreamError, NoAudioStreamError, EmptyMediaError, TruncatedMediaError,
                    probe_video, probe_audio, iter_frames, iter_frame_chunks, read_frames, read_audio,
                    VideoWriter, write_video, display_orientation, apply_display_orientation)

CLIPS = data_dir()/'clips'
SMALL = CLIPS/'vox_f.mp4'  # 224x224, 25 fps, 4.6 s


# ---------------------------------------------------------------- helpers
def index_frame(i, w=64, h=48):
    "A frame carrying its index i < 256: left half (i // 16)*16 + 8, right half (i % 16)*16 + 8."
    a = np.empty((h, w, 3), np.uint8)
    a[:, :w//2] = (i//16)*16 + 8
    a[:, w//2:] = (i % 16)*16 + 8
    return a

def read_index(f):
    "The index stored by `index_frame`, robust to coding noise and resizing."
    h, w = f.shape[:2]
    hi = f[h//4:3*h//4, w//8:3*w//8].mean()
    lo = f[h//4:3*h//4, 5*w//8:7*w//8].mean()
    return int((hi - 8)/16 + .5)*16 + int((lo - 8)/16 + .5)

def make_video(path, n=None, rate=25, pts=None, time_base=None, size=(64, 48), audio=None, sr=16000,
               fmt=None, rotation=None, hflip=False):
    "Write an index-coded lossless H.264 video with PyAV directly (independent of dfe's writer)."
    with av.open(str(path), 'w', format=fmt) as c:
        s = c.add_stream('libx264', rate=rate, options={'qp': '0', 'preset': 'ultrafast'})
        s.width, s.height, s.pix_fmt = *size, 'yuv420p'
        if time_base is not None: s.codec_context.time_base = s.time_base = time_base
        if rotation is not None: s.set_display_rotation(rotation, hflip=hflip)
        if audio is not None:
            a = c.add_stream('aac', rate=sr); a.layout = 'mono'
        for i in range(n if pts is None else len(pts)):
            f = av.VideoFrame.from_ndarray(index_frame(i, *size), format='rgb24')
            if pts is not None: f.pts, f.time_base = pts[i], time_base
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        if audio is not None:
            af = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format='fltp', layout='mono')
            af.sample_rate, af.pts = sr, 0
            c.mux(a.encode(af)); c.mux(a.encode(None))
    return Path(path)

def make_audio(path, x, sr, codec, fmt=None, layout=None):
    "Write samples x (channels, n) float32 with PyAV in the given codec."
    layout = layout or {1: 'mono', 2: 'stereo'}[x.shape[0]]
    with av.open(str(path), 'w', format=fmt) as c:
        a = c.add_stream(codec, rate=sr); a.layout = layout
        sf = a.codec_context.format.name
        data = x if sf.endswith('p') else x.T.reshape(1, -1)
        if sf.startswith('s16'): data = (np.clip(data, -1, 1)*32767).astype(np.int16)
        elif sf.startswith('s32'): data = (np.clip(data, -1, 1)*2147483647).astype(np.int32)
        else: data = data.astype(np.float32)
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sf, layout=layout)
        f.sample_rate, f.pts = sr, 0
        c.mux(a.encode(f)); c.mux(a.encode(None))
    return Path(path)

def expected_index(t_src, k, fps=25, tol_frac=0.01):
    "Previous-frame policy: the last source frame with time <= k/fps (+1 % of an output interval), else 0."
    t = Fraction(k, 1)/Fraction(fps) + Fraction(tol_frac)/Fraction(fps)
    idx = [i for i, ts in enumerate(t_src) if ts <= t]
    return idx[-1] if idx else 0

def psnr(a, b):
    return 10*np.log10(255**2/np.mean((a.astype(np.float64) - b.astype(np.float64))**2))


# ---------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match='no such file'): probe_video(tmp_path/'nope.mp4')
    with pytest.raises(InputFileError, match='no such file'): read_audio(tmp_path/'nope.wav')

def test_empty_file(tmp_path):
    (tmp_path/'e.mp4').write_bytes(b'')
    with pytest.raises(EmptyMediaError, match=r'e\.mp4: is empty \(0 bytes\)'): list(iter_frames(tmp_path/'e.mp4'))

def test_random_bytes(tmp_path):
    p = tmp_path/'noise.mp4'; p.write_bytes(np.random.default_rng(1).bytes(10_000))
    with pytest.raises(MediaError, match='noise.mp4: not a media file') as e: probe_video(p)
    assert not isinstance(e.value, TruncatedMediaError)
    with pytest.raises(MediaError, match='not a media file'): read_audio(p)

def test_wav_only_has_no_video(tmp_path):
    p = make_audio(tmp_path/'speech.wav', np.zeros((1, 8000), np.float32), 16000, 'pcm_s16le')
    with pytest.raises(NoVideoStreamError, match=r'speech\.wav: has no video stream \(only audio\)'): probe_video(p)
    with pytest.raises(NoVideoStreamError): next(iter_frames(p))
    assert len(read_audio(p)) == 8000

def test_video_without_audio(tmp_path):
    p = make_video(tmp_path/'silent.mp4', n=10)
    assert probe_video(p).has_audio is False
    with pytest.raises(NoAudioStreamError, match=r'silent\.mp4: has no audio stream \(video only\)'): read_audio(p)
    with pytest.raises(NoAudioStreamError): probe_audio(p)

def test_truncated_copy_of_shared_clip(tmp_path):
    "A shared clip cut in half loses its moov index (written at the end): refused on open."
    p = tmp_path/'cut.mp4'; p.write_bytes(SMALL.read_bytes()[:SMALL.stat().st_size//2])
    with pytest.raises(TruncatedMediaError, match='cut.mp4: MP4/MOV file without a readable index'): probe_video(p)
    with pytest.raises(TruncatedMediaError): read_audio(p)

def test_truncated_faststart_mp4(tmp_path):
    "With the index at the front (faststart, as dfe writes), a cut file opens; decoding finds it short."
    full = make_video(tmp_path/'full.mp4', n=100, size=(128, 96))
    frames = read_frames(full)
    frames[:, :16] = np.random.default_rng(0).integers(0, 256, frames[:, :16].shape, dtype=np.uint8)  # bytes spread over frames
    fs = write_video(tmp_path/'fs.mp4', frames, crf=10)  # dfe writes +faststart
    b = fs.read_bytes(); assert b.find(b'moov') < b.find(b'mdat')
    cut = tmp_path/'fs_cut.mp4'; cut.write_bytes(b[:len(b)//2])
    info = probe_video(cut)                       # the header still declares the full length
    assert info.n_frames == 100
    with pytest.raises(TruncatedMediaError, match=r'fs_cut\.mp4: video ends at .* but its header declares 4\.00 s'):
        list(iter_frames(cut))
    got = list(iter_frames(cut, allow_truncated=True))
    assert 10 < len(got) < 100
    assert [read_index(f) for f in got] == list(range(len(got)))

def test_truncated_wav(tmp_path):
    p = make_audio(tmp_path/'long.wav', np.zeros((1, 16000*4), np.float32), 16000, 'pcm_s16le')
    cut = tmp_path/'cut.wav'; b = p.read_bytes(); cut.write_bytes(b[:len(b)//2])
    with pytest.raises(TruncatedMediaError, match=r'cut\.wav: audio ends at 2\.00 s but its header declares 4\.00 s'): read_audio(cut)
    assert len(read_audio(cut, allow_truncated=True)) == pytest.approx(32000, abs=100)

def test_zero_frame_video(tmp_path):
    "MP4 drops a track without samples, so the zero-frame case is made as Matroska (which keeps the empty stream)."
    p = tmp_path/'zero.mkv'
    with av.open(str(p), 'w') as c:
        s = c.add_stream('libx264', rate=25); s.width, s.height, s.pix_fmt = 64, 48, 'yuv420p'
        a = c.add_stream('aac', rate=16000); a.layout = 'mono'
        af = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format='fltp', layout='mono'); af.sample_rate, af.pts = 16000, 0
        c.mux(a.encode(af)); c.mux(a.encode(None))
    with av.open(str(p)) as c: assert len(c.streams.video) == 1
    with pytest.raises(EmptyMediaError, match=r'zero\.mkv: has a video stream but no decodable frames'): probe_video(p)
    with pytest.raises(EmptyMediaError): list(iter_frames(p))

def test_bad_arguments():
    with pytest.raises(ValueError, match='size or max_side'): next(iter_frames(SMALL, size=(10, 10), max_side=5))
    with pytest.raises(ValueError, match='fps must be positive'): next(iter_frames(SMALL, fps=0))
    with pytest.raises(ValueError, match='sr must be a positive integer'): read_audio(SMALL, sr=0)


# ---------------------------------------------------------------- frame-rate resampling
@pytest.mark.parametrize('rate', [Fraction(30), Fraction(30000, 1001), Fraction(25), Fraction(15)])
def test_constant_rate_sources(tmp_path, rate):
    "30, 29.97, 25 and 15 fps sources: round(duration*25) frames, each the source frame on screen at k/25."
    n = 150
    p = make_video(tmp_path/'v.mp4', n=n, rate=rate)
    info = probe_video(p)
    assert info.duration == pytest.approx(n/rate, abs=1e-3)
    assert abs(info.n_frames - round(float(n/rate)*25)) <= 1
    out = [read_index(f) for f in iter_frames(p)]
    assert len(out) == info.n_frames
    with av.open(str(p)) as c:
        v = c.streams.video[0]
        t_src = [pk.pts*v.time_base for pk in c.demux(v) if pk.pts is not None]
    t_src.sort()
    assert out == [expected_index(t_src, k) for k in range(len(out))]

def test_30fps_drops_every_sixth(tmp_path):
    p = make_video(tmp_path/'v30.mp4', n=30, rate=30)
    assert [read_index(f) for f in iter_frames(p)] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28]

def test_variable_frame_rate(tmp_path):
    tb = Fraction(1, 1000)
    pts = [0, 40, 50, 130, 140, 300, 310, 320, 500]  # ms; the last frame lasts 40 ms (its guessed duration)
    p = make_video(tmp_path/'vfr.mp4', pts=pts, time_base=tb)
    out = [read_index(f) for f in iter_frames(p)]
    # 540 ms at 25 fps = 13.5 -> 14 frames; frame k shows the last source frame at or before k*40 ms
    assert out == [0, 1, 2, 2, 4, 4, 4, 4, 7, 7, 7, 7, 7, 8]

def test_missing_timestamps_raw_h264(tmp_path):
    "A raw H.264 stream has no timestamps: frames take the previous time plus their duration."
    p = make_video(tmp_path/'raw.h264', n=30, rate=25, fmt='h264')
    with av.open(str(p)) as c: assert next(c.decode(video=0)).pts is None
    assert [read_index(f) for f in iter_frames(p)] == list(range(30))
    assert [read_index(f) for f in iter_frames(p, fps=50)] == [i//2 for i in range(60)]

def test_start_count_and_seek(tmp_path):
    "A window far into a clip (decoded after a seek) equals the same window of a full decode."
    p = make_video(tmp_path/'long.mp4', n=250, rate=30)  # 8.3 s; keyframes every 250 frames -> seek lands at 0
    full = [read_index(f) for f in iter_frames(p)]
    assert [read_index(f) for f in iter_frames(p, start=150, count=20)] == full[150:170]
    clip = CLIPS/'styletalk_feifeili_3.mp4'
    a = read_frames(clip, start=120, count=8, max_side=64)
    b = read_frames(clip, max_side=64)[120:128]
    assert np.array_equal(a, b)
    assert len(list(iter_frames(p, start=10_000))) == 0


# ---------------------------------------------------------------- rotation
@pytest.mark.parametrize('rotation,hflip', [(90, False), (-90, False), (180, False), (0, True), (90, True)])
def test_rotation_metadata(tmp_path, rotation, hflip):
    "Frames stored with a display matrix come out upright: the same as turning the stored image ourselves."
    w, h = 64, 32
    img = np.zeros((h, w, 3), np.uint8); img[:8, :16] = 255; img[-8:, -4:, 0] = 255  # a corner marker and a red mark
    p = tmp_path/'rot.mp4'
    with av.open(str(p), 'w') as c:
        s = c.add_stream('libx264', rate=25, options={'qp': '0'}); s.width, s.height, s.pix_fmt = w, h, 'yuv420p'
        s.set_display_rotation(rotation, hflip=hflip)
        for _ in range(3): c.mux(s.encode(av.VideoFrame.from_ndarray(img, format='rgb24')))
        c.mux(s.encode(None))
    info = probe_video(p)
    assert (info.rotation, info.hflip) == (rotation, hflip)
    assert (info.width, info.height) == ((h, w) if rotation % 180 else (w, h))
    if not hflip:
        with av.open(str(p)) as c: assert (next(c.decode(video=0)).rotation - rotation) % 360 == 0  # PyAV agrees
    f = next(iter_frames(p))
    want = apply_display_orientation(img, rotation, hflip)
    assert f.shape == want.shape
    assert np.abs(f.astype(int) - want).mean() < 8
    # resizing is given as displayed size
    assert next(iter_frames(p, size=(20, 30))).shape == (30, 20, 3)

def test_portrait_phone_convention():
    "A phone's portrait clip is stored landscape with a 90-degree clockwise display rotation (-90 counter-clockwise)."
    stored = np.zeros((2, 3)); stored[0, 0] = 1       # top-left of the stored (landscape) image
    up = apply_display_orientation(stored[..., None], -90)[..., 0]
    assert up.shape == (3, 2) and up[0, -1] == 1      # a clockwise turn moves it to the top-right
    assert display_orientation([0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]) == (-90, False)

def test_writer_rotation_roundtrip(tmp_path):
    frames = np.stack([index_frame(i, 64, 32) for i in range(5)])
    p = write_video(tmp_path/'r.mp4', frames, rotation=90, crf=0)
    info = probe_video(p)
    assert (info.rotation, info.width, info.height) == (90, 32, 64)
    back = read_frames(p)
    assert back.shape == (5, 64, 32, 3)
    assert [read_index(np.rot90(f, -1)) for f in back] == list(range(5))


# ---------------------------------------------------------------- audio
@pytest.mark.parametrize('name,codec,sr,channels', [('a.wav', 'pcm_s16le', 48000, 2), ('a.mp3', 'libmp3lame', 44100, 2),
                                                     ('a.m4a', 'aac', 48000, 2), ('a.flac', 'flac', 22050, 1),
                                                     ('a.wav', 'pcm_f32le', 8000, 1)])
def test_read_audio_formats(tmp_path, name, codec, sr, channels):
    "Any rate/format to 16 kHz mono: same length (1 %), same pitch, channel mean as the mix."
    dur, f0 = 2.0, 440.0
    t = np.arange(int(dur*sr))/sr
    x = np.stack([0.4*np.sin(2*np.pi*f0*t)] + [0.2*np.sin(2*np.pi*f0*t)]*(channels - 1)).astype(np.float32)
    p = make_audio(tmp_path/name, x, sr, codec)
    info = probe_audio(p)
    assert (info.sample_rate, info.channels) == (sr, channels)
    y = read_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - round(info.duration*16000)) <= 0.01*dur*16000
    assert abs(len(y) - dur*16000) <= 0.01*dur*16000
    mid = y[len(y)//4: 3*len(y)//4]
    spec = np.abs(np.fft.rfft(mid*np.hanning(len(mid))))
    assert np.fft.rfftfreq(len(mid), 1/16000)[spec.argmax()] == pytest.approx(f0, abs=2)
    want = 0.4 if channels == 1 else 0.3                          # mean of 0.4 and 0.2
    assert np.sqrt(2)*mid.std() == pytest.approx(want, rel=0.05)
    if channels == 2: assert read_audio(p, mono=False).shape == (2, len(y))

def test_audio_aligned_to_video_origin(tmp_path):
    "The audio track of a video is aligned to the file's time origin; its length is the declared duration."
    sr = 16000
    p = make_video(tmp_path/'av.mp4', n=50, audio=(0.1*np.ones(2*sr)).astype(np.float32), sr=sr)
    y = read_audio(p)
    assert len(y) == round(probe_audio(p).duration*sr) == 2*sr


# ---------------------------------------------------------------- writer
def test_roundtrip_write_read(tmp_path):
    "Corpus clip -> VideoWriter -> reader: frames, size, audio length and pixels survive."
    src = read_frames(SMALL)
    wav = read_audio(SMALL)
    p = write_video(tmp_path/'rt.mp4', iter_frame_chunks(SMALL, chunk=16), audio=wav, crf=18,
                    metadata={'comment': 'synthetic: made with dfe', 'dfe_model': 'test'})
    info = probe_video(p)
    assert (info.width, info.height, info.n_frames, info.codec, info.pix_fmt) == (224, 224, len(src), 'h264', 'yuv420p')
    back = read_frames(p)
    assert back.shape == src.shape
    # crf 18 is "visually lossless": x264 documents roughly 40-45 dB on natural video; 35 dB is a safe floor that
    # still fails on any off-by-one frame (consecutive frames of this clip differ by ~25-30 dB) or colour-matrix error.
    assert psnr(back, src) > 35
    assert psnr(back[1:], src[:-1]) < psnr(back, src) - 3
    y = read_audio(p)
    assert abs(len(y) - len(wav)) <= 0.01*len(wav)
    n = min(len(y), len(wav))
    assert np.corrcoef(y[:n], wav[:n])[0, 1] > 0.9      # same speech, in sync (AAC at 96 kb/s)
    with av.open(str(p)) as c:
        assert c.metadata['comment'] == 'synthetic: made with dfe'
        assert c.metadata['dfe_model'] == 'test'

def test_colours_survive(tmp_path):
    "Pure colours come back as written (the BT.709 tag written is the matrix the reader uses)."
    img = np.zeros((64, 96, 3), np.uint8)
    cols = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128), (200, 150, 100)]
    for i, col in enumerate(cols): img[:, i*16:(i + 1)*16] = col
    p = write_video(tmp_path/'c.mp4', np.stack([img]*3), crf=0)
    back = read_frames(p)[1]
    for i, col in enumerate(cols):
        assert np.abs(back[16:48, i*16 + 4:(i + 1)*16 - 4].reshape(-1, 3).mean(0) - col).max() < 4, col

@pytest.mark.parametrize('odd,want', [('pad', (50, 36)), ('crop', (48, 34))])
def test_odd_sizes(tmp_path, odd, want):
    frames = np.stack([index_frame(i, 49, 35) for i in range(4)])
    p = write_video(tmp_path/'odd.mp4', frames, odd=odd, crf=0)
    back = read_frames(p)
    assert back.shape[1:3] == (want[1], want[0])
    assert [read_index(f) for f in back] == list(range(4))
    if odd == 'pad': assert np.abs(back[:, -1].astype(int) - back[:, -2]).mean() < 3  # edge repeated

def test_writer_rejects_bad_frames(tmp_path):
    with pytest.raises(TypeError, match='uint8'):
        with VideoWriter(tmp_path/'x.mp4') as w: w.write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match='earlier frames were 16x8'):
        with VideoWriter(tmp_path/'x.mp4') as w: w.write(np.zeros((8, 16, 3), np.uint8)); w.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DfeError, match='no frames were written'):
        with VideoWriter(tmp_path/'x.mp4'): pass
    assert list(tmp_path.iterdir()) == []

def test_atomicity(tmp_path):
    "A writer failing mid-way leaves no file, and an existing output stays as it was."
    out = tmp_path/'out.mp4'
    frames = np.stack([index_frame(i) for i in range(10)])
    class Boom(Exception): pass
    def gen():
        yield frames[:5]; raise Boom('encoder input failed')
    with pytest.raises(Boom): write_video(out, gen())
    assert list(tmp_path.iterdir()) == []
    write_video(out, frames)
    before = out.read_bytes()
    with pytest.raises(Boom):
        with VideoWriter(out, audio=np.zeros(16000, np.float32)) as w:
            w.write(frames[::-1]); raise Boom('crash after writing')
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['out.mp4']
    w = VideoWriter(out); w.write(frames[:2]); w.abort()        # explicit abort
    assert out.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
    assert [read_index(f) for f in read_frames(out)] == list(range(10))

def test_read_frames_memory_limit():
    with pytest.raises(DfeError, match='iter_frame_chunks'): read_frames(SMALL, max_bytes=10**6)
    assert read_frames(SMALL, max_bytes=10**6, count=4).shape == (4, 224, 224, 3)


# ---------------------------------------------------------------- every clip of the corpus
def _packet_span(path):
    "Video end (s) from demuxed packet timestamps, and audio samples at native rate: independent of dfe.io's decoding."
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        starts = [s.start_time*s.time_base for s in (*c.streams.video, *c.streams.audio) if s.start_time is not None]
        origin = min(starts) if starts else 0
        end = max((pk.pts + (pk.duration or 0))*v.time_base for pk in c.demux(v) if pk.pts is not None)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return float(end - origin), sum(f.samples for f in c.decode(a)), a.sample_rate

@pytest.mark.parametrize('clip', load_manifest(), ids=lambda c: c.id)
def test_corpus_clip(clip):
    "Each clip: 25 fps frames numbering round(duration*25) +-1, 16 kHz audio of round(duration*16000) +-1 %."
    info = probe_video(clip.path)
    assert (info.width, info.height) == (clip.width, clip.height)           # the manifest's probe agrees
    vid_end, native, native_sr = _packet_span(clip.path)
    assert info.duration == pytest.approx(vid_end, abs=0.05)
    ms = 256 if max(info.width, info.height) > 256 else None                # the frame count does not depend on size
    shapes, n = set(), 0
    for ch in iter_frame_chunks(clip.path, chunk=64, max_side=ms):
        shapes.add(ch.shape[1:]); n += len(ch)
    assert abs(n - round(vid_end*25)) <= 1
    assert n == info.n_frames
    assert len(shapes) == 1
    y = read_audio(clip.path)
    assert y.dtype == np.float32 and np.isfinite(y).all() and 0 < np.abs(y).max() <= 1.5
    assert abs(len(y) - round(info.audio_duration*16000)) <= 0.01*info.audio_duration*16000
    # what the decoder really produced, which may run up to one AAC frame (1024 samples) of encoder padding past
    # the declared end (read_audio cuts it off)
    assert abs(len(y) - native*16000/native_sr) <= 0.01*len(y) + 1024*16000/native_sr
