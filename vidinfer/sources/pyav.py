"""PyAV (FFmpeg) source: demux, software decode, and one swscale pass to the detector's size.

One thread per stream. FFmpeg's demuxing, decoding and scaling release the GIL, so streams
decode in parallel with each other and with inference.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import Interpolation

from vidinfer.config import StreamSpec
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.redact import redact_url, scrub
from vidinfer.sources.base import DecodeHints, FrameQueue, SourceStats, StreamClock
from vidinfer.sources.ffmpeg_options import unknown_options

__all__ = ["DecodeError", "INTERPOLATION", "PyAVSource", "SoftwareDecoding", "SourceStats", "UnsupportedInput",
           "scaled_rgb"]

log = logging.getLogger(__name__)

# Resize filter for the detector input. AREA averages every source pixel that falls into an
# output pixel (no aliasing when shrinking 1080p to 640). FULL_CHR_H_INT and ACCURATE_RND make
# swscale interpolate H.264's left-sited chroma at its true position: without them boxes of
# coloured objects shift by about half a pixel in x (measured on the sample clips).
INTERPOLATION = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
BACKOFF_START_S = 1.0


class _Stop(Exception):
    """The pipeline is shutting down."""


class _Refused(Exception):
    """The input can never be analysed (codec, size): fail the stream at once, never retry."""


class DecodeError(Exception):
    """A decoding strategy could not decode a packet (damaged data); the stream goes on."""


class UnsupportedInput(Exception):
    """A decoding strategy can never decode this stream (e.g. a codec NVDEC lacks): raised by
    ``open``, or by ``decode`` when only the frames tell; the stream fails with its message."""


class SoftwareDecoding:
    """FFmpeg's software decoder, frames resized to the detector input by one swscale pass.

    A *decoding strategy*: `PyAVSource` demuxes, samples, paces and reconnects; the strategy turns
    packets into frames and frames into the `Frame` image. `vidinfer.sources.nvdec.NvdecDecoding`
    is the GPU one.
    """

    name = "pyav"

    def __init__(self, keep_source: bool = False):
        self.keep_source = keep_source
        self.recreations = 0

    def open(self, stream: Any, decode_threads: int, skip: str | None) -> None:
        """``skip``: frames FFmpeg need not decode: ``"NONKEY"`` (keyframes_only) or ``"NONREF"``
        (frames no other frame refers to, such as most B-frames: the frames that are decoded
        come out bit-exact, since nothing depends on the skipped ones)."""
        cc = stream.codec_context
        cc.thread_count = decode_threads
        cc.thread_type = "AUTO"
        if skip is not None:
            cc.skip_frame = skip

    def decode(self, packet: Any) -> list[tuple[Any, int | None, int, int]]:
        """(frame, pts in the stream's time base or None, width, height) of one packet."""
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            raise DecodeError(_short(exc)) from exc
        return [(f, f.pts, f.width, f.height) for f in frames]

    def dts(self, frame: Any) -> int | None:
        """The frame's dts as FFmpeg gives it: that of the packet that brought it out of the
        decoder, growing in output order (`StreamClock` prefers it when every frame is decoded).
        A strategy without this method (NVDEC) has its frames timed by their pts."""
        return frame.dts

    def image(self, frame: Any, box: Letterbox) -> tuple[Any, Any]:
        """(the Frame's image, its source) for one decoded frame."""
        image = frame.reformat(width=box.new_w, height=box.new_h, format="rgb24",
                               interpolation=INTERPOLATION).to_ndarray()
        return image, frame if self.keep_source else None


class PyAVSource:
    """Decodes one stream (a file or a network URL) on its own thread: a `Source`.

    Args:
        spec: the stream's options.
        decoding: how packets become frames (default: FFmpeg's software decoder, `SoftwareDecoding`;
            the GPU backend passes `vidinfer.sources.nvdec.NvdecDecoding`).

    ``start(queue, hints)`` letterboxes each frame into ``hints.size`` (the first detector's input)
    in the decode thread and keeps the full-resolution frame when ``hints.full_frames``.
    """

    def __init__(self, spec: StreamSpec, decoding: Any = None):
        self.spec = spec
        self.stream_id = spec.id
        self.live = spec.is_live
        self.queue_size = spec.queue_size
        self.stats = SourceStats()
        self._decoding = decoding
        self.decoding: Any = decoding
        self.input_size: tuple[int, int] | None = None
        self.decode_threads = spec.decode_threads
        self.keep_source = False
        self.queue: FrameQueue  # given by start()
        self._stopping = threading.Event()
        self.safe_url = redact_url(spec.url)
        self._thread = threading.Thread(target=self._run, name=f"source-{spec.id}", daemon=True)
        self._passes = 0  # complete passes over a file, for loop = N
        # Timeline state, kept across loops and reconnects so pts and frame numbers never go back.
        self._clock: StreamClock | None = None  # made by the first pass (_new_pass)
        self._frame_offset = 0
        self._skip: str | None = None  # frames the decoder leaves out (see _frames_to_skip)
        self._next_sample_ns: int | None = None
        self._pace_origin: tuple[float, int] | None = None
        self._discontinuity = False
        self._letterbox: Letterbox | None = None

    # -- lifecycle --
    def start(self, queue: FrameQueue, hints: DecodeHints) -> None:
        self.queue = queue
        self.input_size = hints.size
        self.decode_threads = self.spec.decode_threads or hints.decode_threads
        self.keep_source = hints.full_frames
        self.decoding = self._decoding if self._decoding is not None else SoftwareDecoding(hints.full_frames)
        self._warn_unknown_options()
        self._thread.start()

    def _warn_unknown_options(self) -> None:
        """FFmpeg ignores an option no part of it knows, in silence: say so (`ffmpeg_options`)."""
        unknown = unknown_options(self.spec.options) if self.spec.options else None
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            one = len(unknown) == 1
            log.warning("stream %s: unknown FFmpeg option%s %s in its options, ignored by FFmpeg; fix the name%s or "
                        "remove %s (`ffmpeg -h full` lists FFmpeg's options)", self.spec.id, "" if one else "s",
                        names, "" if one else "s", "it" if one else "them")

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _event(self, state: StreamState, reason: str = "", end: bool = False, **info: Any) -> None:
        self.stats.state, self.stats.reason = state, reason
        if info:
            self.stats.info.update(info)
        bad = state in (StreamState.FAILED, StreamState.RECONNECTING, StreamState.DEGRADED)
        log_fn = log.warning if bad else log.info
        log_fn("stream %s: %s%s", self.spec.id, state.value, f" ({reason})" if reason else "")
        self.queue.put(StreamEvent(self.spec.id, state, reason, dict(info), end_of_stream=end))

    def _run(self) -> None:
        attempt = 0
        final_state, final_reason = StreamState.ENDED, "end of file"
        try:
            while not self._stopping.is_set():
                opened_at = time.monotonic()
                try:
                    container = self._open()
                except _Refused as exc:
                    final_state, final_reason = StreamState.FAILED, str(exc)
                    break
                except (av.FFmpegError, OSError) as exc:
                    reason = _describe_open_error(exc, self.spec.url, self.safe_url)
                    if time.monotonic() - opened_at >= 0.95 * self.spec.open_timeout_s and \
                            not reason.startswith("no answer from"):
                        # e.g. RTSP over a server that accepts and stays silent says "Invalid data"
                        reason = (f"no answer from {self.safe_url} within the open timeout "
                                  f"({self.spec.open_timeout_s:g} s)")
                    if not self._may_reconnect(attempt):
                        final_state, final_reason = StreamState.FAILED, reason
                        break
                    attempt = self._backoff(attempt, reason)
                    continue
                try:
                    produced = self._decode(container)
                    if produced:
                        attempt = 0
                except _Stop:
                    final_reason = "stopped"
                    break
                except _Refused as exc:
                    final_state, final_reason = StreamState.FAILED, str(exc)
                    break
                except (av.FFmpegError, OSError) as exc:
                    # PyAV puts the URL in the message: keep its credentials out of events and logs.
                    reason = f"read error: {scrub(_short(exc), self.spec.url)}"
                    if not self._may_reconnect(attempt):
                        final_state, final_reason = StreamState.FAILED, reason
                        break
                    attempt = self._backoff(attempt, reason)
                    continue
                finally:
                    container.close()
                if self._stopping.is_set():
                    final_reason = "stopped"
                    break
                if not self.live:
                    if self.stats.decoded == 0:
                        final_state, final_reason = StreamState.FAILED, "no frame could be decoded"
                    break
                if not self._may_reconnect(attempt):
                    final_reason = "stream ended"
                    break
                attempt = self._backoff(attempt, "stream ended")
            else:
                final_reason = "stopped"
        except Exception as exc:  # a bug must not take other streams down: report it on this one
            # The traceback may quote the URL: its secrets are masked there too.
            log.error("stream %s: unexpected error: %s", self.spec.id, scrub(traceback.format_exc(), self.spec.url))
            final_state, final_reason = StreamState.FAILED, f"internal error: {scrub(_short(exc), self.spec.url)}"
        info = {"frames_decoded": self.stats.decoded, "frames_analysed": self.stats.queued,
                "frames_dropped": self.queue.dropped, "decode_errors": self.stats.decode_errors,
                "retimed_frames": self.stats.retimed_frames}
        self.queue.put(StreamEvent(self.spec.id, final_state, final_reason, info, end_of_stream=True))
        self.stats.state, self.stats.reason = final_state, final_reason

    def _may_reconnect(self, attempt: int) -> bool:
        if not (self.live and self.spec.reconnect) or self._stopping.is_set():
            return False
        return self.spec.max_reconnects < 0 or attempt < self.spec.max_reconnects

    def _backoff(self, attempt: int, reason: str) -> int:
        """Capped exponential backoff with jitter; returns the next attempt number."""
        # The exponent is capped: a camera down for hours must not overflow the float (and fail).
        delay = min(self.spec.reconnect_max_s, BACKOFF_START_S * 2 ** min(attempt, 30))
        delay = delay / 2 + random.uniform(0, delay / 2)
        self.stats.reconnects += 1
        self._event(StreamState.RECONNECTING, f"{reason}; retrying in {delay:.1f} s", attempt=attempt + 1)
        self._discontinuity = True
        self._stopping.wait(delay)
        return attempt + 1

    # -- opening --
    def _open(self) -> Any:
        url = self.spec.url
        if "://" not in url and not Path(url).exists():
            raise FileNotFoundError(2, "No such file or directory", url)
        options = dict(self.spec.options)
        container = av.open(url, options=options,
                            timeout=(self.spec.open_timeout_s, self.spec.read_timeout_s))
        if not container.streams.video:
            container.close()
            raise av.error.InvalidDataError(1094995529, "the input has no video stream", url)
        vs = container.streams.video[0]
        cc = vs.codec_context
        if cc is None:  # FFmpeg found a video stream but has no decoder for its codec
            container.close()
            raise _Refused(f"{self.safe_url}: its video codec cannot be decoded by this FFmpeg build; "
                           "re-encode it (e.g. to H.264) or use an FFmpeg build with that decoder")
        try:
            self._check_size(cc.width, cc.height)
        except _Refused:
            container.close()
            raise
        rate = vs.average_rate or vs.guessed_rate
        self._skip = self._frames_to_skip(float(rate) if rate else None)
        try:
            self.decoding.open(vs, self.decode_threads, self._skip)
        except UnsupportedInput as exc:
            container.close()
            raise _Refused(f"{self.safe_url}: {exc}") from None
        self._event(StreamState.CONNECTED, width=cc.width, height=cc.height,
                    fps=float(rate) if rate else None, codec=cc.name, live=self.live, url=self.safe_url)
        return container

    def _frames_to_skip(self, fps: float | None) -> str | None:
        """What the decoder may leave out. keyframes_only: all but keyframes. Sampling at most half
        the frame rate (``reference_frames_only`` unset or true): frames nothing refers to, about
        half of an H.264 stream with B-frames (40% less decoding measured on the sample clips);
        the sampled frame is then the first *decoded* one at or after each tick, at most a few
        frames late, with its own exact timestamp."""
        if self.spec.keyframes_only:
            return "NONKEY"
        ref_only = self.spec.reference_frames_only
        if ref_only is False or (ref_only is None and (self.spec.sample_fps is None or fps is None
                                                       or self.spec.sample_fps > fps / 2)):
            return None
        return "NONREF"

    # -- decoding --
    def _decode(self, container: Any) -> bool:
        """Decode until the end (looping files if asked). Returns whether any frame came out."""
        vs = container.streams.video[0]
        tb = vs.time_base or Fraction(1, 90000)
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        frame_ns = int(1e9 / float(rate))
        produced = False
        skipped_pts: int | None = None  # latest pts of the packets keyframes_only skipped
        clock = self._new_pass(tb, rate, frame_ns)  # the first pass, or after a reconnect
        dts_of = getattr(self.decoding, "dts", None)
        while True:
            for packet in container.demux(vs):
                if self._stopping.is_set():
                    raise _Stop
                if self.spec.keyframes_only and packet.size and not packet.is_keyframe:
                    # The decoder would skip it anyway; don't even parse it. Its time still says
                    # where the input ends, for the timeline of the next loop.
                    if packet.pts is not None:
                        skipped_pts = packet.pts if skipped_pts is None else max(skipped_pts, packet.pts)
                    continue
                try:
                    frames = self.decoding.decode(packet)
                except DecodeError as exc:
                    self._decode_error(exc)
                    continue
                except UnsupportedInput as exc:  # e.g. NVDEC frames of a format no kernel reads
                    raise _Refused(f"{self.safe_url}: {exc}") from None
                finally:
                    self.stats.decoder_recreations = self.decoding.recreations
                for f, pts, width, height in frames:
                    pts_ns = clock.tick(pts, dts_of(f) if dts_of is not None else None)
                    self._count_retimed(clock.retimed)
                    self._on_frame(f, width, height, pts_ns, rate)
                    produced = True
            if skipped_pts is not None:
                end_ns = clock.at(skipped_pts)
                if end_ns is not None:
                    clock.reaches(end_ns)
                skipped_pts = None
            self._passes += 1
            if not produced or not self._loops_left():  # a live stream loops only when asked (simulated cameras)
                return produced
            # Loop: restart the file; time and frame numbers carry on from where they were.
            clock = self._new_pass(tb, rate, frame_ns)
            self._discontinuity = True
            container.seek(0)

    def _loops_left(self) -> bool:
        """loop = true plays a file forever; loop = N plays it N times in all."""
        loop = self.spec.loop
        if loop is True:
            return True
        return bool(loop) and self._passes < int(loop)

    def _new_pass(self, tb: Fraction, rate: Fraction, frame_ns: int) -> StreamClock:
        """The clock of a new pass over the input: the first, or a loop or reconnect, which starts
        one frame after the last one. Timed by dts when every frame is decoded (`StreamClock`)."""
        prefer_dts = self._skip is None and hasattr(self.decoding, "dts")
        clock = self._clock
        if clock is None:
            clock = self._clock = StreamClock(tb, frame_ns, prefer_dts)
            return clock
        if clock.last_ns >= 0:
            if self._skip is not None:
                # Frames are numbered by time: continue after the last frame the input held, not
                # after the last frame that was decoded.
                self._frame_offset += round((clock.last_ns - clock.pass_start_ns) * float(rate) / 1e9) + 1
            else:
                self._frame_offset = self.stats.decoded
        clock.new_pass(tb, frame_ns, prefer_dts)
        return clock

    def _count_retimed(self, retimed: int) -> None:
        if self.stats.retimed_frames == 0 < retimed:  # once per stream: the file, not each frame
            log.warning("stream %s: a frame's timestamp went back or stood still; such frames are given the time one "
                        "frame after the last (counted in retimed_frames)", self.spec.id)
        self.stats.retimed_frames = retimed

    def _decode_error(self, exc: Exception) -> None:
        self.stats.decode_errors += 1
        if self.stats.state is not StreamState.DEGRADED:
            self._event(StreamState.DEGRADED, f"decoding past damaged data: {_short(exc)}")

    def _check_size(self, width: int, height: int) -> None:
        """Refuse frames above ``max_pixels``: one enormous stream must not exhaust memory for all."""
        if width * height > self.spec.max_pixels:
            raise _Refused(f"resolution {width}x{height} is larger than max_pixels ({self.spec.max_pixels}); "
                           "raise the stream's max_pixels if frames this large are intended")

    def _on_frame(self, f: Any, width: int, height: int, pts_ns: int, rate: Fraction) -> None:
        if self._letterbox is None or self._letterbox.src_w != width or self._letterbox.src_h != height:
            self._check_size(width, height)  # also when the size changes mid-stream
        self.stats.decoded += 1
        if self._skip is not None and self._clock is not None:
            # Not every frame comes out: number frames by their time, as the source counts them.
            frame_no = self._frame_offset + round((pts_ns - self._clock.pass_start_ns) * float(rate) / 1e9)
        else:
            frame_no = self.stats.decoded - 1
        if not self._sampled(pts_ns):
            return
        if self.spec.realtime:
            self._pace(pts_ns)
        box = self._letterbox
        if box is None or box.src_w != width or box.src_h != height:
            box = self._letterbox = Letterbox.fit(width, height, *(self.input_size or (width, height)))
        image, source = self.decoding.image(f, box)
        frame = Frame(self.spec.id, frame_no, pts_ns, time.time_ns(), image, box, source=source,
                      discontinuity=self._discontinuity, decoded_at=time.monotonic())
        self._discontinuity = False
        if not self.queue.put(frame):
            raise _Stop
        self.stats.queued += 1

    def _sampled(self, pts_ns: int) -> bool:
        """sample_fps: keep the first frame at or after each 1/sample_fps tick of stream time."""
        if self.spec.sample_fps is None:
            return True
        period = int(1e9 / self.spec.sample_fps)
        nxt = self._next_sample_ns
        tolerance = period // 100  # timestamps rounded by the container must not skip a tick
        if nxt is None or pts_ns + tolerance >= nxt:
            base = pts_ns if nxt is None or pts_ns - nxt >= period else nxt
            self._next_sample_ns = base + period
            return True
        return False

    def _pace(self, pts_ns: int) -> None:
        """realtime: release frames no faster than their timestamps, like a camera would."""
        now = time.monotonic()
        if self._pace_origin is None or self._discontinuity and not self.spec.loop:
            self._pace_origin = (now, pts_ns)
            return
        t0, p0 = self._pace_origin
        delay = t0 + (pts_ns - p0) / 1e9 - now
        if delay > 0 and self._stopping.wait(delay):
            raise _Stop


def scaled_rgb(source: Any, width: int, height: int) -> Any:
    """A decoded PyAV frame or an HxWx3 uint8 RGB array, resized to width x height RGB by one
    swscale pass with the sources' filter (`INTERPOLATION`)."""
    if not isinstance(source, av.VideoFrame):
        source = av.VideoFrame.from_ndarray(source, format="rgb24")
    return source.reformat(width=width, height=height, format="rgb24", interpolation=INTERPOLATION).to_ndarray()


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _describe_open_error(exc: BaseException, url: str, safe_url: str) -> str:
    if isinstance(exc, FileNotFoundError) and "://" not in url:
        return f"file '{url}' does not exist; check the stream's url"
    text = scrub(_short(exc), url)
    if isinstance(exc, (TimeoutError, av.error.ExitError)) or "timed out" in text.lower():
        return f"no answer from {safe_url} within the open timeout ({text})"
    if "no video stream" in text:
        return f"{safe_url} has no video stream"
    return f"cannot open {safe_url}: {text}"
