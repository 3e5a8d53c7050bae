"""MediaPipe FaceMesh (468 points) on 300VW-layout videos: the runner ``tdd_lite.peers`` calls in MediaPipe's own
environment.

mediapipe 0.10.21 needs ``numpy<2`` and the project pins numpy 2, so FaceMesh runs in a separate virtual
environment with this standalone script (it imports neither ``tdd_lite`` nor torch)::

    python3 -m venv MPVENV
    MPVENV/bin/pip install mediapipe==0.10.21 "numpy<2" opencv-python-headless
    MPVENV/bin/python tools/run_mediapipe_peer.py --data ROOT --videos 001 002:0:300 --out mp.npz

It uses the legacy ``mp.solutions.face_mesh.FaceMesh`` (its .tflite models ship inside the wheel: nothing is
downloaded at run time) in video mode (``static_image_mode=False``: the face detector runs on the first frame
and whenever the track is lost, otherwise each frame is cropped from the previous landmarks), one face,
``refine_landmarks=False`` (468 points), the default confidences (0.5). Frames are decoded like
``tdd_lite.video_io.read_frames``: OpenCV, BGR -> RGB (this script cannot import tdd_lite, so it opens the video
itself).

Output ``.npz`` (written atomically): per video ``ID/points468`` ``(T, 468, 2)`` float32 in image pixels
(pixel centres at integers: MediaPipe's normalised ``x * W - 0.5``), NaN where FaceMesh found no face;
``ID/seconds`` (time inside ``FaceMesh.process`` only), ``ID/size`` ``(W, H)``; ``meta/mediapipe``,
``meta/numpy``, ``meta/opencv``. ``ID:START:STOP`` runs frames ``START <= k < STOP`` only (a fresh FaceMesh per
video, started at START). The temporary file is named like ``tdd_lite.files.atomic_write``'s
(``.STEM.tmp-PID-XXXX.npz``), so ``tdd_lite.files.remove_stale_temp_files`` recognises one a kill left behind.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path


def run_video(face_mesh_cls, path: Path, start: int, stop: int | None):
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"run_mediapipe_peer: error: {path}: cannot open the video")
    out, seconds = [], 0.0
    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    with face_mesh_cls(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                       min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        k = 0
        while stop is None or k < stop:
            ok, bgr = cap.read()
            if not ok:
                break
            if k >= start:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                rgb.flags.writeable = False
                t0 = time.perf_counter()
                res = mesh.process(rgb)
                seconds += time.perf_counter() - t0
                if res.multi_face_landmarks:
                    lm = res.multi_face_landmarks[0].landmark
                    out.append(np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in lm[:468]], np.float32))
                else:
                    out.append(np.full((468, 2), np.nan, np.float32))
            k += 1
    cap.release()
    pts = np.stack(out) if out else np.zeros((0, 468, 2), np.float32)
    return pts, seconds, (w, h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="300VW-layout folder (NNN/vid.avi)")
    ap.add_argument("--videos", nargs="+", required=True, metavar="ID[:START:STOP]")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    try:
        import cv2
        import mediapipe as mp
        import numpy as np
    except ImportError as e:
        print(f"run_mediapipe_peer: error: {e} (this Python needs mediapipe==0.10.21, numpy<2, opencv)",
              file=sys.stderr)
        return 2
    arrays = {"meta/mediapipe": np.array(mp.__version__), "meta/numpy": np.array(np.__version__),
              "meta/opencv": np.array(cv2.__version__)}
    for i, item in enumerate(args.videos):
        vid, *rng = item.split(":")
        start = int(rng[0]) if rng else 0
        stop = int(rng[1]) if len(rng) > 1 else None
        pts, seconds, size = run_video(mp.solutions.face_mesh.FaceMesh, Path(args.data) / vid / "vid.avi", start,
                                       stop)
        arrays[f"{vid}/points468"] = pts
        arrays[f"{vid}/seconds"] = np.array(seconds)
        arrays[f"{vid}/size"] = np.array(size)
        if args.progress:
            found = int(np.isfinite(pts).all(axis=(1, 2)).sum())
            print(f"mediapipe {i + 1}/{len(args.videos)} {vid}: {found}/{len(pts)} frames with a face, "
                  f"{len(pts) / seconds if seconds else 0:.1f} frames/s", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}.npz")  # .npz: savez keeps the name
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
