"""Tracking speed: frames/s of `dfe.tracking.track_video` (all stages, no cache) on a 512² clip, per stage.

  python bench/bench_tracking.py [--clip clips/hdtf_katiehill_000.mp4] [--frames 200] [--threads 2]
  (or: dfe bench tracking)

Writes outputs/bench/tracking.json. Target (issue #3): at least 2 frames/s on 2 CPU cores for a 512² clip.
The load average before and after is recorded: other work on the machine slows a run down, so compare
runs made on a quiet machine.
"""
import argparse, os, platform, tempfile, time
from pathlib import Path
import torch
from dfe.core import data_dir, outputs_dir, atomic_write_json
from dfe.io import write_video, iter_frames
from dfe.tracking import track_video, TrackSettings

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--clip', default='clips/hdtf_katiehill_000.mp4', help='clip, relative to $DFE_DATA')
    ap.add_argument('--frames', type=int, default=200, help='frames of the clip to track (at 25 fps)')
    ap.add_argument('--threads', type=int, default=2, help='torch threads')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp())
    clip = tmp/'clip.mp4'
    write_video(clip, iter_frames(data_dir()/a.clip, count=a.frames))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    tr, met = track_video(clip, None, TrackSettings(), device='cpu', progress=False, cache_root=tmp/'cache')
    dt = time.perf_counter() - t0
    res = dict(clip=a.clip, frames=len(tr), size=list(tr.image_size), threads=a.threads, seconds=round(dt, 2),
               frames_per_second=round(len(tr)/dt, 3), target_frames_per_second=2.0, meets_target=len(tr)/dt >= 2.0,
               stage_seconds=met['stage_seconds'], landmark_nme=met['landmark_nme'], settings_key=TrackSettings().key(),
               torch=torch.__version__, cpu_count=os.cpu_count(), platform=platform.platform(),
               load_average_at_start=load0, load_average_at_end=os.getloadavg())
    for k, v in res.items(): print(f"{k:>24s}: {v}")
    print(f"wrote {atomic_write_json(outputs_dir()/'bench'/'tracking.json', res)}")

if __name__ == '__main__': main()
