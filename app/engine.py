"""The server's live sessions and checkpoints, without the UI: :class:`Engine` holds the loaded
checkpoints and extractors and one :class:`~app.session.LiveSession` per browser session (keyed by
:func:`session_key`: the login and the session hash), within the limits of :data:`MAX_SESSIONS` and
:data:`MAX_SESSIONS_PER_USER`.  :mod:`app.ui` draws the page over it; nothing here imports Gradio."""

from __future__ import annotations

import threading
import time
from pathlib import Path

LOCAL = "local"             # the one shared session of --source local / FILE
IDLE_CLOSE_S = 600          # a browser session without frames or audio for this long is closed
MAX_SESSIONS = 8            # live browser sessions at once (each runs a face, audio and fusion pipeline)
MAX_SESSIONS_PER_USER = 4   # ... of which one login may hold (tabs, reloads)

NOT_LOADED = "**Not loaded:** not one of this server's checkpoints; choose one from the list."


class SessionLimit(RuntimeError):
    """No new live session now: the server's or this login's limit is reached (the message says which)."""


class Engine:
    """The loaded checkpoints + extractors, and the live sessions using them.

    ``ck`` is every new session's checkpoint.  ``choices`` (name -> run directory, fixed at start,
    :func:`app.checkpoint.checkpoint_choices`) are the only ones a page may switch to, each for its
    own session; each is loaded once, on first use, and shared by the sessions that chose it.
    """

    def __init__(self, ck, comp, make_config, device="cpu", choices: dict | None = None,
                 max_sessions: int = MAX_SESSIONS, max_per_user: int = MAX_SESSIONS_PER_USER):
        import os

        from app.checkpoint import checkpoint_choices

        self.max_sessions, self.max_per_user = int(max_sessions), int(max_per_user)
        # frames handled at once across sessions; a frame arriving while all are busy is dropped
        # (the page sends the next one), so a slow or flooding client costs frames, not the server
        self.frame_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
        self.dropped_frames = 0

        self.ck = ck
        self.comp = comp
        self.make_config = make_config
        self.device = device
        self.choices = dict(choices) if choices else checkpoint_choices(ck.path)
        self.default_name = next((n for n, p in self.choices.items() if Path(p) == Path(ck.path)), None)
        if self.default_name is None:
            self.default_name = Path(ck.path).name or str(ck.path)
            self.choices = {self.default_name: Path(ck.path), **self.choices}
        self.loaded = {self.default_name: ck}
        self._load_lock = threading.Lock()
        self.sessions: dict[str, object] = {}
        self.last_seen: dict[str, float] = {}
        self.settings: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.local = None          # app.local.LocalCapture when --source local
        self.trace = None          # app.trace.StageTrace (python -m app --trace FILE)
        self._frame_seq: dict[str, int] = {}
        self._uplink: dict[str, str] = {}          # microphone uplink token -> session key
        self._runs: dict[str, tuple[str, float]] = {}   # session key -> (uplink run, its stream time 0)
        self.on_forget: list = []   # called with a session's key when it closes, under self.lock (app.camera_rtc: its camera feed)

    @property
    def heads(self) -> dict:
        return self.heads_of(self.ck)

    @staticmethod
    def heads_of(ck) -> dict:
        return {n: m for n, (m, _meta) in ck.heads.items()}

    def checkpoint_of(self, key: str | None):
        """The checkpoint the session ``key`` uses (its choice, else the default)."""
        name = self.settings.get(key or "anon", {}).get("checkpoint")
        return self.loaded.get(name, self.ck)

    def get(self, key: str | None, create: bool = True):
        from app.session import LiveSession

        key = key or "anon"
        with self.lock:
            self._expire()
            s = self.sessions.get(key)
            if s is None and create:
                self._admit(key)
                s = LiveSession(self.ck.model, self.comp, self.make_config(), heads=self.heads, threaded=True)
                self.sessions[key] = s
                if self.trace is not None:
                    s.trace, s.trace_key = self.trace, key
                    self.trace.event("session", key, t0_wall=round(s.t0_unix, 4))
                self._apply(s, self.settings.get(key, {}))
            if s is not None and create:
                self.last_seen[key] = time.monotonic()
            return s

    def uplink_token(self, key: str) -> str:
        """The microphone uplink's token for session ``key`` (made once; only that page gets it)."""
        import secrets

        with self.lock:
            for tok, k in self._uplink.items():
                if k == key:
                    return tok
            tok = secrets.token_urlsafe(24)
            self._uplink[tok] = key
            return tok

    def key_of_token(self, token: str, login: str | None = None) -> str:
        """The session key of a page's token (:meth:`uplink_token`), held by ``login`` when the
        session has an owner.  Raises :class:`app.uplink.UplinkError` (403)."""
        from app.uplink import UplinkError

        with self.lock:
            key = self._uplink.get(token)
        if key is None:
            raise UplinkError(403, "unknown uplink token (reload the page)")
        owner = owner_of_key(key)
        if owner is not None and login != owner:
            raise UplinkError(403, "not your session")
        return key

    def uplink_audio(self, token: str, run: str, offset: int, rate: int, samples, login: str | None = None) -> None:
        """One chunk of the page's microphone (``app.uplink``): ``offset`` samples after its recording
        ``run`` started.  The first chunk of a run places the run on the session's clock (it ends
        now); later chunks follow it sample-exactly.  Raises :class:`app.uplink.UplinkError`."""
        from app.uplink import UplinkError

        key = self.key_of_token(token, login)
        try:
            s = self.get(key)
        except SessionLimit as e:
            raise UplinkError(503, str(e)) from None
        with self.lock:
            known = self._runs.get(key)
            if known is None or known[0] != run:
                start = max(0.0, s.clock() - (offset + len(samples)) / rate)
                self._runs[key] = known = (run, start)
        s.push_audio(samples, rate, t=known[1] + offset / rate)

    def trace_frame(self, key: str, dropped: bool = False, frame=None) -> None:
        """Trace a camera frame's arrival for session ``key`` (numbered per session, with the
        benchmark page's mark when it drew one, :func:`app.trace.frame_mark`, else the camera file's
        frame number when it has one, :func:`app.trace.file_mark`)."""
        from app.trace import file_mark, frame_mark

        with self.lock:
            seq = self._frame_seq.get(key, 0)
            self._frame_seq[key] = seq + 1
        mark = frame_mark(frame)
        self.trace.event("frame_in", key, seq=seq, dropped=bool(dropped), mark=mark,
                         file_mark=file_mark(frame) if mark is None and frame is not None else None)

    def _admit(self, key: str) -> None:
        """Raise :class:`SessionLimit` when a new session ``key`` would pass a limit (under the lock)."""
        if key == LOCAL:
            return
        live = [k for k in self.sessions if k != LOCAL]
        user = owner_of_key(key)
        if user is not None and sum(owner_of_key(k) == user for k in live) >= self.max_per_user:
            raise SessionLimit(f"This login already has {self.max_per_user} live sessions open (the limit); "
                               "close another tab of the app, then reload.")
        if len(live) >= self.max_sessions:
            raise SessionLimit(f"The server is serving its limit of {self.max_sessions} live sessions; "
                               "try again when one closes.")

    def admission_problem(self, key: str | None) -> str | None:
        """Why a session ``key`` that does not exist yet would not be admitted now (None: it would)."""
        with self.lock:
            if (key or "anon") in self.sessions:
                return None
            try:
                self._admit(key or "anon")
            except SessionLimit as e:
                return str(e)
        return None

    def owner(self, session_hash: str) -> str | None:
        """The login that holds the session ``session_hash`` (None: nobody, or no login)."""
        with self.lock:
            for k in self.sessions:
                if k.rpartition("/")[2] == session_hash:
                    return owner_of_key(k)
        return None

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, t in self.last_seen.items() if now - t > IDLE_CLOSE_S and k != LOCAL]:
            s = self.sessions.pop(k, None)
            self.last_seen.pop(k, None)
            self._forget(k)
            if s is not None:
                s.close()

    def _forget(self, key: str) -> None:
        """Drop what the engine keeps for session ``key`` besides the session (under the lock)."""
        self._runs.pop(key, None)
        self._frame_seq.pop(key, None)
        for tok in [t for t, k in self._uplink.items() if k == key]:
            del self._uplink[tok]
        for forget in self.on_forget:
            forget(key)

    def close(self, key: str | None) -> None:
        if key == LOCAL:
            return
        with self.lock:
            s = self.sessions.pop(key or "anon", None)
            self.last_seen.pop(key or "anon", None)
            self.settings.pop(key or "anon", None)
            self._forget(key or "anon")
        if s is not None:
            s.close()

    def set(self, key: str | None, **kw) -> None:
        key = key or "anon"
        with self.lock:
            self.settings.setdefault(key, {}).update(kw)
            s = self.sessions.get(key)
        if s is not None:
            self._apply(s, kw)

    def _apply(self, s, kw: dict) -> None:
        for k, v in kw.items():
            if k == "checkpoint":
                ck = self.loaded[v]
                s.set_model(ck.model, self.heads_of(ck))
            elif k == "start_step":
                s.cfg.start_step = None if v in (None, 0, "") else int(v)
            elif k == "mmer":
                s.set_mmer(bool(v))
            else:
                s.set_health(**{k: v})

    def load(self, name, key: str | None):
        """Switch the session ``key`` to the checkpoint called ``name`` (one of :attr:`choices`;
        anything else, a path included, is refused with the same message, whether or not it
        exists).  Returns (message, the session's checkpoint)."""
        from app.checkpoint import CheckpointError, load_checkpoint

        path = self.choices.get(name) if isinstance(name, str) else None
        if path is None:
            return NOT_LOADED, self.checkpoint_of(key)
        with self._load_lock:
            ck = self.loaded.get(name)
            if ck is None:
                try:
                    ck = load_checkpoint(path, self.device)
                except CheckpointError as e:
                    return f"**Not loaded:** {e}", self.checkpoint_of(key)
                running = getattr(self.comp, "feature_set", None)
                if running is not None and ck.feature_set != running:
                    return (f"**Not loaded:** `{name}` reads the {ck.feature_set.name} features; this app "
                            f"runs the {running.name} extractors (start it with that checkpoint instead)",
                            self.checkpoint_of(key))
                self.loaded[name] = ck
        self.set(key, checkpoint=name)
        return f"Loaded `{name}` for this session.", ck


def checkpoint_controls(ck) -> dict[str, bool]:
    """Which per-checkpoint controls act on ``ck``: the diffusion start step n (only a completer
    whose sampler reads it: the paper-variant ADN) and MMER (only a checkpoint trained with it)."""
    completer = getattr(ck.model, "completer", None)
    return {"start_step": bool(getattr(completer, "uses_start_step", False)),
            "mmer": bool(getattr(ck.model, "mmer", False))}


def session_key(request) -> str:
    """A browser session's key: its session hash, bound to the login that opened it (with --auth), so
    a request of another login (or none) naming the same hash never reaches this session."""
    session = getattr(request, "session_hash", None) or "anon"
    user = getattr(request, "username", None)
    return f"{user}/{session}" if user else session


def owner_of_key(key: str) -> str | None:
    user, sep, _ = key.rpartition("/")
    return user if sep else None
