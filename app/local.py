"""``--source local``: this machine's camera (OpenCV) and microphone (sounddevice).

``--camera`` is an OpenCV camera index (0), a device path (``/dev/video2``) or a video file / stream
URL; ``--microphone`` a sounddevice input device (index or name; default: the system's).  Both
packages are in requirements/app.txt (sounddevice needs Debian's libportaudio2).  Whatever cannot be
opened is reported and the app goes on with what is there: no camera -> V missing, no microphone ->
A and T missing; a camera that stops delivering frames mid-session is reported after
``stall_after_s`` and V goes "stalled".
"""

from __future__ import annotations

import sys
import threading
import time


class LocalCapture:
    def __init__(self, camera: int | str = 0, microphone: int | str | None = None, width: int = 640,
                 height: int = 480, fps: float = 30.0, sr: int = 16000, block_s: float = 0.1,
                 stall_after_s: float = 5.0):
        self.camera = int(camera) if isinstance(camera, str) and camera.strip().isdigit() else camera
        self.microphone = (int(microphone) if isinstance(microphone, str) and microphone.strip().isdigit()
                           else microphone)
        self.width, self.height, self.fps = width, height, fps
        self.sr, self.block_s, self.stall_after_s = sr, block_s, stall_after_s
        self.problems: list[str] = []
        self.cv2 = self.sd = None
        try:
            import cv2  # noqa: F401

            self.cv2 = cv2
        except Exception as e:  # noqa: BLE001
            self.problems.append(f"no camera capture: OpenCV is not installed ({type(e).__name__}); "
                                 "pip install opencv-python-headless")
        try:
            import sounddevice  # noqa: F401

            self.sd = sounddevice
        except Exception as e:  # noqa: BLE001 - OSError when PortAudio is missing
            self.problems.append(f"no microphone capture: sounddevice unavailable ({type(e).__name__}: {e}); "
                                 "pip install sounddevice, apt-get install libportaudio2")
        self.last_frame = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream = None
        self.video_on = self.audio_on = False

    @property
    def available(self) -> bool:
        return self.cv2 is not None or self.sd is not None

    @property
    def problem(self) -> str:
        return "; ".join(self.problems)

    def describe(self) -> str:
        return (f"this machine's camera ({'on' if self.video_on else 'off'}) and microphone "
                f"({'on' if self.audio_on else 'off'})" + (f"; {self.problem}" if self.problems else ""))

    def start(self, session) -> None:
        if self.cv2 is not None:
            cap = self.cv2.VideoCapture(self.camera)
            if not cap.isOpened():
                self.problems.append(f"camera {self.camera} could not be opened")
            else:
                cap.set(self.cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(self.cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                self.video_on = True
                th = threading.Thread(target=self._video, args=(cap, session), daemon=True, name="local-cam")
                th.start()
                self._threads.append(th)
        if self.sd is not None:
            try:
                def cb(indata, frames, time_info, status):
                    session.push_audio(indata[:, 0].copy(), self.sr)

                self._stream = self.sd.InputStream(device=self.microphone, samplerate=self.sr, channels=1,
                                                   dtype="float32",
                                                   blocksize=int(self.sr * self.block_s), callback=cb)
                self._stream.start()
                self.audio_on = True
            except Exception as e:  # noqa: BLE001
                self.problems.append(f"microphone could not be opened ({type(e).__name__}: {e})")

    def _video(self, cap, session) -> None:
        period = 1.0 / self.fps
        last_ok = time.perf_counter()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                ok, bgr = cap.read()
            except Exception:  # noqa: BLE001 - an unplugged device may raise instead of returning False
                ok, bgr = False, None
            if not ok or bgr is None or getattr(bgr, "ndim", 0) != 3:
                if t0 - last_ok > self.stall_after_s:
                    self.problems.append(f"the camera stopped delivering frames ({self.stall_after_s:g} s)")
                    self.video_on = False
                    break           # V goes "stalled" in the session
                time.sleep(0.05)
                continue
            last_ok = t0
            rgb = bgr[..., ::-1].copy()
            frame = session.cap_frame(rgb)
            self.last_frame = frame
            session.push_video(frame)
            dt = time.perf_counter() - t0
            if dt < period:
                time.sleep(period - dt)
        cap.release()

    def stop(self) -> None:
        self._stop.set()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # noqa: BLE001
                pass
        for th in self._threads:
            th.join(timeout=2.0)


def run_local_headless(ck, comp, cfg, heads, out, duration, quiet=False, camera: int | str = 0,
                       microphone: int | str | None = None) -> int:
    """``--source local --no-ui``: capture until Ctrl-C (or ``duration`` s), JSONL to ``out``."""
    from app.session import LiveSession
    from app.window import results_file

    cap = LocalCapture(camera, microphone)
    if not cap.available:
        print(f"app: --source local: {cap.problem}", file=sys.stderr)
        return 2
    target = results_file(out)
    with target as fh:        # a file is renamed into place when the capture ends (Ctrl-C included)
        lock = threading.Lock()

        def write(r):
            with lock:
                fh.write(r.to_json() + "\n")           # the same JSONL line as the replay's
                fh.flush()

        session = LiveSession(ck.model, comp, cfg, heads=heads, threaded=True, on_result=write)
        cap.start(session)
        if cap.problems:
            print(f"app: --source local: {cap.problem}", file=sys.stderr)
        if not (cap.video_on or cap.audio_on):
            session.close()
            target.discard = True                         # nothing captured: no file
            print("app: --source local: neither camera nor microphone could be opened", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        try:
            while duration is None or time.monotonic() - t0 < duration:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            cap.stop()
            session.close()
    return 0


class FileCapture:
    """``python -m app --source FILE`` (with the UI): the file played in real time, looped, as if
    it came from a camera and microphone (same interface as :class:`LocalCapture`)."""

    def __init__(self, path, loop: bool = True):
        self.path = str(path)
        self.loop = loop
        self.problems: list[str] = []
        self.last_frame = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.video_on = self.audio_on = False
        try:
            from app.replay import media_streams

            kinds = media_streams(self.path)
            self.video_on, self.audio_on = "V" in kinds, "A" in kinds
        except Exception as e:  # noqa: BLE001
            self.problems.append(f"cannot read {self.path} ({type(e).__name__}: {e})")

    @property
    def available(self) -> bool:
        return self.video_on or self.audio_on

    @property
    def problem(self) -> str:
        return "; ".join(self.problems)

    def describe(self) -> str:
        return f"file {self.path}" + (", looped" if self.loop else "")

    def start(self, session) -> None:
        self._thread = threading.Thread(target=self._run, args=(session,), daemon=True, name="file-capture")
        self._thread.start()

    def _run(self, session) -> None:
        from app.replay import push_in_real_time

        def shown(frame):
            self.last_frame = frame = session.cap_frame(frame)
            return frame

        while not self._stop.is_set():     # each pass continues the session's stream time
            push_in_real_time(session, self.path, offset=session.clock(), stop=self._stop, on_frame=shown)
            if not self.loop:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
