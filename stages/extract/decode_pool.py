"""Decoding in worker processes, pipelined with the pose model.

A :class:`DecodePool` keeps ``n`` processes that decode clips (ffmpeg, and the resize of the
frames the cache keeps) while the process that owns the pose model runs it on earlier clips, so
the model does not wait for ffmpeg and ffmpeg does not wait for the model. The pose process
claims clips, submits them, and reads each clip's :class:`ClipStream` in submission order; a
stream has the :class:`~stages.extract.clip.ClipDecoder` interface (``frames()``, ``result()``),
so :func:`~stages.extract.clip.extract_clip` runs unchanged on it.

Frames travel in shared memory (torch's tensor sharing: a file descriptor, not a copy through a
pipe), in chunks of about :data:`CHUNK_BYTES`. Each worker's output queue holds at most
:data:`QUEUE_CHUNKS` chunks, so a worker that runs ahead blocks instead of filling memory: at most
``n * (QUEUE_CHUNKS + 1)`` chunks are alive besides the pose model's batch.

Failures keep per-clip semantics: a clip the worker cannot decode comes back as its
:class:`~stages.extract.decode.DecodeError` / :class:`~stages.extract.clip.ClipError` (recorded
as that clip's failure by the caller); a worker that dies (killed, out of memory) fails the clip
it was decoding with that reason, and a fresh worker takes over the clips queued behind it.
Workers ignore Ctrl-C (the pose process handles it and shuts them down) and exit by themselves
when the pose process is gone.
"""
from __future__ import annotations

import collections
import multiprocessing as mp
import queue
import signal
import traceback
from typing import Any, Iterator, Optional

import numpy as np

from stages.datasets.base import ClipRecord
from stages.extract.clip import ClipDecoder, ClipError, DecodedClip, ExtractSettings
from stages.extract.decode import DecodeError, VideoInfo
from stages.extract.semaphores import tag_semaphores

CHUNK_BYTES = 32 << 20  # frames per message: about this many bytes (at least one frame)
QUEUE_CHUNKS = 4  # messages a worker may have waiting for the pose process
POLL_S = 1.0  # how often blocked workers and readers check that the other side is alive


class DecodeWorkerError(RuntimeError):
    """A decode worker raised something unexpected (the worker's traceback is the ``__cause__``)."""


class DecodeWorkerDied(DecodeError):
    """The worker decoding this clip died; the clip is failed with this reason."""


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return self.args[0]


def _shared_uint8(shape: tuple[int, ...]):
    """An uninitialised uint8 tensor in shared memory (what DataLoader workers collate into)."""
    import torch

    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


class _Parent:
    """The pose process as seen from a worker."""

    def __init__(self):
        self._proc = mp.parent_process()

    def alive(self) -> bool:
        return self._proc is None or self._proc.is_alive()


def _put(out, msg, parent: _Parent) -> None:
    while True:
        try:
            out.put(msg, timeout=POLL_S)
            return
        except queue.Full:
            if not parent.alive():
                raise SystemExit(0)


def _decode_one(seq: int, clip: ClipRecord, settings: ExtractSettings, send_frames: bool, out, parent: _Parent):
    try:
        decoder = ClipDecoder(clip, settings)
        _put(out, ("info", seq, decoder.info), parent)  # the header, before any frame
        if send_frames:
            chunk, buf, k = None, None, 0
            frames = decoder.frames()
            try:
                for f in frames:
                    if chunk is None:
                        chunk = _shared_uint8((max(1, CHUNK_BYTES // f.nbytes),) + f.shape)
                        buf, k = chunk.numpy(), 0
                    buf[k] = f
                    k += 1
                    if k == len(buf):
                        _put(out, ("frames", seq, chunk), parent)
                        chunk = None
                if chunk is not None:
                    _put(out, ("frames", seq, chunk[:k]), parent)
            finally:
                frames.close()  # stops ffmpeg if we leave early
        decoded = decoder.result()
        kept = _shared_uint8(decoded.frames.shape)
        kept.numpy()[...] = decoded.frames
        decoded.frames = None
        _put(out, ("done", seq, decoded, kept), parent)
    except ClipError as e:
        _put(out, ("error", seq, "clip", str(e), None), parent)
    except DecodeError as e:
        _put(out, ("error", seq, "decode", str(e), None), parent)
    except (FileNotFoundError, KeyError) as e:  # as extract_clip reports them
        _put(out, ("error", seq, "clip", f"{type(e).__name__}: {e}", None), parent)
    except Exception as e:
        _put(out, ("error", seq, "internal", f"{type(e).__name__}: {e}", traceback.format_exc()), parent)


def _worker_main(settings: ExtractSettings, send_frames: bool, tasks, out) -> None:
    import torch
    import torch.multiprocessing  # noqa: F401  (registers shared-memory tensor pickling)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pose process's to handle
    torch.set_num_threads(1)
    out.cancel_join_thread()  # never hang at exit on chunks nobody will read
    parent = _Parent()
    while True:
        try:
            task = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if not parent.alive():
                return
            continue
        if task is None:
            return
        _decode_one(*task, settings, send_frames, out, parent)


class _Slot:
    """One worker process, its queues, and the streams submitted to it (oldest first)."""

    def __init__(self, ctx, settings: ExtractSettings, send_frames: bool):
        self._ctx, self._args = ctx, (settings, send_frames)
        self.pending: collections.deque[ClipStream] = collections.deque()
        self.start()

    def start(self) -> None:
        tag_semaphores()  # a killed run's queues are then found and removed by the next run
        self.tasks = self._ctx.Queue()
        self.out = self._ctx.Queue(maxsize=QUEUE_CHUNKS)
        self.proc = self._ctx.Process(target=_worker_main, args=(*self._args, self.tasks, self.out), daemon=True,
                                      name="pevl-decode")
        self.proc.start()

    def stop(self, wait: float) -> None:
        if self.proc.is_alive():
            try:
                self.tasks.put(None)
            except (OSError, ValueError):
                pass
            self.proc.join(timeout=wait)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        for q in (self.tasks, self.out):
            q.cancel_join_thread()
            q.close()


class DecodePool:
    """``workers`` decode processes for the clips of one extraction run (see the module doc).

    ``send_frames``: stream the full-size frames to the pose process (pose sources that look at
    pixels); otherwise only the cached frames come back.
    """

    def __init__(self, workers: int, settings: ExtractSettings, send_frames: bool):
        import torch.multiprocessing as tmp

        if workers < 1:
            raise ValueError(f"a decode pool needs at least one worker, got {workers}")
        ctx = tmp.get_context("spawn")  # fork is unsafe with the pose model's threads and CUDA
        self._slots = [_Slot(ctx, settings, send_frames) for _ in range(workers)]
        self._seq = 0

    def submit(self, clip: ClipRecord) -> "ClipStream":
        """Queue ``clip`` for decoding; read the returned streams in the order they were submitted."""
        slot = min(self._slots, key=lambda s: len(s.pending))
        self._seq += 1
        stream = ClipStream(self, slot, self._seq, clip)
        slot.pending.append(stream)
        slot.tasks.put((stream.seq, clip))
        return stream

    def _finished(self, stream: "ClipStream") -> None:
        if stream in stream.slot.pending:
            stream.slot.pending.remove(stream)

    def _replace_dead_worker(self, slot: _Slot, failed: Optional["ClipStream"]) -> None:
        """Start a fresh worker in ``slot`` and give it the clips queued there (but ``failed``)."""
        if failed is not None:
            self._finished(failed)
        slot.stop(wait=0)
        slot.start()
        for stream in slot.pending:
            slot.tasks.put((stream.seq, stream.clip))

    def close(self, wait: float = 10.0) -> None:
        for slot in self._slots:
            slot.stop(wait)

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close(wait=0 if exc[0] is not None else 10.0)


class ClipStream:
    """One submitted clip as the pose process reads it: ``frames()`` then ``result()``."""

    def __init__(self, pool: DecodePool, slot: _Slot, seq: int, clip: ClipRecord):
        self.pool, self.slot, self.seq, self.clip = pool, slot, seq, clip
        self._result: Optional[DecodedClip] = None
        self._info: Optional[VideoInfo] = None
        self._read = False
        self._used = False  # frames went to the caller: the clip cannot start over
        self._resubmitted = False

    def _next(self) -> tuple:
        """The next message of this clip (what is left of clips abandoned earlier is dropped)."""
        while True:
            slot = self.slot
            try:
                msg = slot.out.get(timeout=POLL_S)
            except queue.Empty:
                if slot.proc.is_alive():
                    continue
                msg = None
            except Exception:  # a chunk whose sender died cannot be mapped any more
                slot.proc.join(timeout=5)
                if slot.proc.is_alive():
                    raise
                msg = None
            if msg is None:  # the worker is gone
                code = slot.proc.exitcode
                # Nothing of this clip was used yet: it gets one more try in a fresh worker.
                again = not self._used and not self._resubmitted
                self._resubmitted |= again
                self.pool._replace_dead_worker(slot, None if again else self)
                if again:
                    continue
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                raise DecodeWorkerDied(f"the decode worker process died ({why}) while decoding this clip")
            if msg[1] == self.seq:
                return msg

    @property
    def info(self) -> VideoInfo:
        """The clip's header (waits for the worker's first message; raises its error if it failed)."""
        if self._info is None:
            if self._read:
                raise RuntimeError("the clip's header is read before its frames")
            msg = self._next()
            if msg[0] != "info":
                self.discard()
                self._raise(msg)
            self._info = msg[2]
        return self._info

    @staticmethod
    def _raise(msg: tuple) -> None:
        _, _, kind, text, remote_tb = msg
        if kind == "clip":
            raise ClipError(text)
        if kind == "decode":
            raise DecodeError(text)
        raise DecodeWorkerError(text) from _RemoteTraceback(remote_tb)

    def _chunks(self) -> Iterator[Any]:
        if self._read:
            raise RuntimeError("a clip's frames can be streamed once")
        self._read = True
        try:
            while True:
                msg = self._next()
                if msg[0] == "info":
                    self._info = msg[2]
                    continue
                if msg[0] == "frames":
                    yield msg[2]
                    continue
                if msg[0] == "done":
                    self._result = msg[2]
                    self._result.frames = msg[3].numpy()
                    return
                self._raise(msg)
        finally:
            self.discard()

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame of the clip at full size, as the worker decodes them."""
        for chunk in self._chunks():
            self._used = True
            yield from chunk.numpy()

    def result(self) -> DecodedClip:
        """The cached frames and the clip's header (reads the stream to its end if needed)."""
        if not self._read:
            for _ in self._chunks():
                pass
        if self._result is None:
            raise RuntimeError("result() of a clip whose frames were not streamed to the end")
        return self._result

    def discard(self) -> None:
        """Done with this clip (read, failed or given up): the worker's later clips come next."""
        self._read = True
        self.pool._finished(self)


def decode_pool_available() -> Optional[str]:
    """None when this process may start decode workers, else why not (daemonic processes, such
    as Dask's workers, may not have children)."""
    if mp.current_process().daemon:
        return "this process is daemonic (a Dask worker?) and may not start decode worker processes"
    return None
