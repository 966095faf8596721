"""Benchmark of dfe.io: decode every corpus clip to 25 fps RGB at full size (streamed in chunks) and its audio to
16 kHz mono; time and peak-memory growth per clip; memory while streaming the 1080x1920 HEVC clip compared with
holding all its frames; H.264 encoding speed. Prints a table and writes outputs/bench/io.json (atomically).

    python bench/bench_io.py [--clips ID ...] [--chunk 32]     (or: dfe bench io)
"""
import argparse, os, platform, sys, threading, time
import numpy as np

from dfe.core import outputs_dir, atomic_write_json
from dfe.data import load_manifest
from dfe.io import probe_video, iter_frame_chunks, read_audio, write_video, read_frames
import av


class PeakRSS:
    "Peak resident memory of this process while the block runs, sampled every 5 ms from /proc/self/statm."
    page = os.sysconf('SC_PAGE_SIZE')
    def rss(self):
        with open('/proc/self/statm') as f: return int(f.read().split()[1])*self.page
    def __enter__(self):
        self.base = self.peak = self.rss(); self._stop = False
        def run():
            while not self._stop:
                self.peak = max(self.peak, self.rss()); time.sleep(0.005)
        self._t = threading.Thread(target=run, daemon=True); self._t.start(); return self
    def __exit__(self, *a):
        self._stop = True; self._t.join(); self.peak = max(self.peak, self.rss())
    @property
    def delta_mb(self): return (self.peak - self.base)/2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--clips', nargs='*', help='clip ids (default: all)')
    ap.add_argument('--chunk', type=int, default=32, help='frames per chunk when streaming')
    args = ap.parse_args(argv)
    clips = [c for c in load_manifest() if not args.clips or c.id in args.clips]
    rows = []
    print(f"{'clip':22s}{'codec':>7s}{'size':>11s}{'src fps':>8s}{'frames':>7s}{'video s':>9s}{'frames/s':>9s}"
          f"{'audio s':>8s}{'peak +MB':>9s}{'all frames MB':>14s}")
    for c in clips:
        info = probe_video(c.path)
        with PeakRSS() as m:
            t0 = time.perf_counter(); n = 0
            for ch in iter_frame_chunks(c.path, chunk=args.chunk): n += len(ch)
            tv = time.perf_counter() - t0
            t0 = time.perf_counter(); a = read_audio(c.path); ta = time.perf_counter() - t0
        held = info.n_frames*info.width*info.height*3/2**20
        r = dict(id=c.id, codec=info.codec, width=info.width, height=info.height, source_fps=info.fps, frames=n,
                 duration=info.duration, video_seconds=tv, frames_per_second=n/tv, audio_seconds=ta,
                 audio_samples=len(a), peak_rss_delta_mb=m.delta_mb, all_frames_mb=held)
        rows.append(r)
        print(f"{c.id:22s}{info.codec:>7s}{f'{info.width}x{info.height}':>11s}{info.fps:8.2f}{n:7d}{tv:9.2f}{n/tv:9.0f}"
              f"{ta:8.2f}{m.delta_mb:9.0f}{held:14.0f}")
    tot_f, tot_s = sum(r['frames'] for r in rows), sum(r['video_seconds'] for r in rows)
    print(f"total: {tot_f} frames in {tot_s:.1f} s ({tot_f/max(tot_s, 1e-9):.0f} frames/s) over {len(rows)} clips")

    res = dict(machine=dict(python=sys.version.split()[0], pyav=av.__version__, platform=platform.platform(),
                            cpus=os.cpu_count()), chunk=args.chunk, clips=rows,
               total=dict(frames=tot_f, video_seconds=tot_s, frames_per_second=tot_f/max(tot_s, 1e-9)))

    # streaming the largest clip: memory stays at a few chunks, not the whole video
    big = max(clips, key=lambda c: c.width*c.height*c.duration)
    info = probe_video(big.path)
    for chunk in (8, args.chunk):
        with PeakRSS() as m:
            for ch in iter_frame_chunks(big.path, chunk=chunk): pass
        chunk_mb = chunk*info.width*info.height*3/2**20
        res.setdefault('streaming', []).append(dict(clip=big.id, chunk=chunk, chunk_mb=chunk_mb,
            peak_rss_delta_mb=m.delta_mb, all_frames_mb=info.n_frames*info.width*info.height*3/2**20))
        print(f"streaming {big.id} ({info.width}x{info.height}, {info.n_frames} frames = "
              f"{info.n_frames*info.width*info.height*3/2**30:.2f} GiB if held): chunk={chunk} ({chunk_mb:.0f} MB) "
              f"-> peak RSS +{m.delta_mb:.0f} MB")

    # encoding: a 512x512 HDTF clip at crf 18 with its audio
    import tempfile, pathlib
    src = next((c for c in clips if c.id.startswith('hdtf_')), clips[0])
    frames, audio = read_frames(src.path), read_audio(src.path)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = write_video(pathlib.Path(d)/'enc.mp4', frames, audio=audio, crf=18)
        te = time.perf_counter() - t0
        size = p.stat().st_size
    res['encode'] = dict(clip=src.id, frames=len(frames), width=frames.shape[2], height=frames.shape[1], crf=18,
                         seconds=te, frames_per_second=len(frames)/te, bytes=size)
    print(f"encode {src.id}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]} crf 18 + AAC in {te:.2f} s "
          f"({len(frames)/te:.0f} frames/s, {size/1e6:.2f} MB)")

    out = atomic_write_json(outputs_dir()/'bench'/'io.json', res)
    print(f"wrote {out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
