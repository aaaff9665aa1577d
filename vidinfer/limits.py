"""Upper bounds of numeric keys, with the reason in the error.

Every numeric key of a stream, of the top level and of the built-in stages and sinks has an upper
bound (pydantic ``le=``, so it also shows in the JSON schema). A bare pydantic error says only
"less than or equal to 64"; a field that adds ``why(...)`` says why:

    decode_threads: Annotated[int, why(THREADS)] = Field(default=0, ge=0, le=64)

    key 'streams[0].decode_threads': must be at most 64 (FFmpeg's decoders ...), got 100000
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator

__all__ = ["why", "MAX_BATCH_SIZE", "MAX_BATCH_WHY", "MAX_CROPS_WHY", "MAX_THREADS", "THREADS_WHY",
           "MAX_DECODE_THREADS", "DECODE_THREADS_WHY", "MAX_PIXELS", "HOUR_S", "MAX_SIDE"]

_BOUND_ERRORS = ("less_than_equal", "less_than")


def why(reason: str) -> Any:
    """Field metadata: an error over the field's ``le``/``lt`` bound says ``must be at most N (reason)``."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                if err["type"] in _BOUND_ERRORS:
                    ctx = err.get("ctx") or {}
                    bound = ctx.get("le", ctx.get("lt"))
                    if isinstance(bound, float):
                        bound = f"{bound:g}"
                    word = "at most" if err["type"] == "less_than_equal" else "less than"
                    raise ValueError(f"must be {word} {bound} ({reason})") from None
            raise

    return WrapValidator(check)


# Frames per batch (the pipeline's) and crops per classifier run.
MAX_BATCH_SIZE = 1024
MAX_BATCH_WHY = ("a batch holds that many model inputs at once: a 640x640 detector input takes 4.9 MB a frame, "
                 "5 GB at 1024, and throughput stops growing after a few dozen frames")
MAX_CROPS_WHY = ("crops per classifier run, all in memory at once; runs gain nothing past a few dozen crops, "
                 "and the model's own batch limit may be lower")
# ONNX Runtime's intra-op threads of one model.
MAX_THREADS = 256
THREADS_WHY = "ONNX Runtime's threads of one model; more threads than cores only slow it down"
# FFmpeg's decoder threads of one stream.
MAX_DECODE_THREADS = 64
DECODE_THREADS_WHY = ("FFmpeg's decoders pick at most 16 threads on their own and warn above that; every thread "
                      "holds its own copy of the decoder's state, so thousands stall the start for seconds")
# FFmpeg refuses images with (w+128)*(h+128) >= INT_MAX/8 (av_image_check_size): about 16384x16384.
MAX_PIXELS = 16384 * 16384
HOUR_S = 3600.0
# The longest side of an image a stage is asked to make (model inputs, text detection).
MAX_SIDE = 8192
