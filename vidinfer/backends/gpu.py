"""The GPU backend: NVDEC decode into GPU memory, the fused NV12 letterbox kernel writing straight
into a preallocated CuPy batch, TensorRT (or ONNX Runtime's GPU providers) on the batch, and only
the detector's small outputs copied to the host for the shared post-processing.

HAS NOT RUN ON GPU HARDWARE: tests/test_gpu_pipeline.py runs this module's code with fake CuPy,
PyNvVideoCodec and TensorRT modules (NumPy, PyAV and ONNX Runtime underneath, the kernels run from
their .cu sources on the CPU); tools/gpu_check.sh runs it on a GPU.

Streams and ordering:

* each source decodes on its own CUDA stream and synchronises it before queueing a frame
  (`vidinfer.sources.nvdec.NvdecDecoding`), so every queued frame is complete;
* CUDA's current device is per thread: the sources make ``gpu.device_id`` current on their
  threads, and every method here makes it current on the caller's (the pipeline's) thread;
* this backend launches the letterbox and crop kernels on one preprocessing stream; TensorRT's
  stream waits for it through an event (``run_async(..., after=event)``), so the pipeline thread
  never blocks between preprocessing and inference;
* double buffering: two batch tensors alternate, and the pipeline starts batch k+1 (its kernels
  and its inference) before it reads batch k's outputs when k+1 is already waiting
  (`pipelined`). Batch k's tensor is reused for k+2 only after k's outputs were read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer._xp import to_numpy
from vidinfer.config import GpuSpec, StreamSpec
from vidinfer.devices import DevicePlan
from vidinfer.engines.base import ImageInput
from vidinfer.frame import DeviceNV12, Frame
from vidinfer.models.classifier import host_crops
from vidinfer.preprocess.gpu import crop_resize_nv12, letterbox_nv12_into
from vidinfer.preprocess.letterbox import RGB_0_1, InputConvention, Letterbox, fill_batch_slot
from vidinfer.sources.nvdec import NvdecDecoding
from vidinfer.sources.pyav import INTERPOLATION, PyAVSource

__all__ = ["GpuBackend", "GpuRun"]

# FFmpeg's AVColorSpace / AVColorRange codes of the colour matrices the kernels use.
_AVCOL_SPC = {"bt601": 5, "bt709": 1}  # BT470BG (= BT.601 625), BT709
_AVCOL_RANGE = {False: 1, True: 2}  # MPEG (studio), JPEG (full)


class GpuRun:
    """A detector run in flight: ``outputs()`` waits for it and copies the outputs to the host."""

    def __init__(self, outputs: dict[str, Any], event: Any, n: int):
        self._outputs, self._event, self._n = outputs, event, n

    def outputs(self) -> dict[str, Any]:
        if self._event is not None:
            self._event.synchronize()
        return {k: to_numpy(v[: self._n]) for k, v in self._outputs.items()}


class GpuBackend:
    name = "gpu"
    pipelined = True

    def __init__(self, plan: DevicePlan, spec: GpuSpec | None = None):
        import cupy

        spec = spec or GpuSpec()
        self.plan = plan
        self.cp = cupy
        self.gpu = spec.device_id
        self.cache_dir = spec.engine_cache_dir
        cupy.cuda.Device(self.gpu).use()
        self.stream = cupy.cuda.Stream(non_blocking=True)  # letterbox and crop kernels

    def make_source(self, spec: StreamSpec) -> PyAVSource:
        # Full frames are moot here: the Frame's image is the whole decoded frame, in GPU memory.
        decoding = NvdecDecoding(self.gpu, self.plan.decoder, cupy=self.cp)
        return PyAVSource(spec, decoding=decoding)

    def make_engine(self, path: Path, input_size: tuple[int, int] | None, threads: int, role: str,
                    max_batch: int) -> Any:
        if self.plan.engine == "tensorrt":
            from vidinfer.engines.tensorrt import TensorRTEngine

            return TensorRTEngine(path, input_size, max_batch, self.cache_dir, self.gpu)
        from vidinfer.engines.onnxruntime_gpu import OnnxRuntimeGpuEngine

        return OnnxRuntimeGpuEngine(path, input_size, max_batch, self.gpu, self.cache_dir)

    def _device(self) -> Any:
        """The backend's GPU as the current device of the calling thread, for a ``with``."""
        return self.cp.cuda.Device(self.gpu)

    def new_batch(self, inp: ImageInput, slots: int) -> Any:
        with self._device():
            return self.cp.empty((slots, 3, inp.height, inp.width), inp.dtype)

    def launch(self, engine: Any, batch: Any, frames: Sequence[Frame], boxes: Sequence[Letterbox],
               convention: InputConvention = RGB_0_1) -> GpuRun:
        """Letterbox every frame into its slot (any box: the kernel reads the whole NV12 frame) in
        the model's input convention, then start the detector; returns at once (TensorRT)."""
        with self._device():
            return self._launch(engine, batch, frames, boxes, convention)

    def _launch(self, engine: Any, batch: Any, frames: Sequence[Frame], boxes: Sequence[Letterbox],
                convention: InputConvention) -> GpuRun:
        n = len(frames)
        for i, (f, box) in enumerate(zip(frames, boxes)):
            if isinstance(f.image, DeviceNV12):
                matrix, offsets = f.image.colour()
                letterbox_nv12_into(batch, i, f.image.data, None, box, matrix, offsets, stream=self.stream,
                                    chroma_siting=f.image.chroma_siting, convention=convention)
            else:  # host pixels (an ArraySource): the CPU's resize, then one upload of the slot
                from vidinfer.backends.cpu import detector_image

                slot = np.empty((1, *batch.shape[1:]), batch.dtype)
                fill_batch_slot(slot, 0, detector_image(f, box), box, convention)
                with self.stream:
                    batch[i] = self.cp.asarray(slot[0])
        tensor = batch[: engine.input.padded_size(n)]
        if hasattr(engine, "run_async"):  # TensorRT: its stream waits for the kernels, not this thread
            outputs, event = engine.run_async(tensor, after=self.stream.record())
            return GpuRun(outputs, event, n)
        self.stream.synchronize()  # ONNX Runtime runs on its own stream
        return GpuRun(engine.run(tensor), None, n)

    def crops(self, frames: Sequence[Frame], boxes: Sequence[Any], out_h: int, out_w: int, dtype: Any) -> Any:
        """The secondary classifiers' input: every frame's boxes cut from its NV12 frame on the GPU."""
        with self._device():
            return self._crops(frames, boxes, out_h, out_w, dtype)

    def _crops(self, frames: Sequence[Frame], boxes: Sequence[Any], out_h: int, out_w: int, dtype: Any) -> Any:
        cp = self.cp
        parts = []
        with self.stream:
            for f, xyxy in zip(frames, boxes):
                if not len(xyxy):
                    continue
                if isinstance(f.image, DeviceNV12):
                    img = f.image
                    matrix, offsets = img.colour()
                    parts.append(crop_resize_nv12(img.data, None, xyxy, out_h, out_w, matrix, offsets,
                                                  stream=self.stream, chroma_siting=img.chroma_siting,
                                                  size=(img.width, img.height)))
                else:  # host pixels (an ArraySource): crops on the CPU, uploaded
                    parts.append(cp.asarray(host_crops([f], [xyxy], out_h, out_w, np.float32)))
            tensor = cp.ascontiguousarray(cp.concatenate(parts).astype(dtype, copy=False))
        self.stream.synchronize()  # the classifier's engine runs on its own stream
        return tensor

    def host_frames(self, frames: Sequence[Frame]) -> list[Frame]:
        """Copies of the frames with host pixels, for stages that read pixels on the CPU.

        Only stages that need them get these (the brand stage's OCR and camera-motion thumbnails,
        the tracker's cut detection): each costs a device-to-host copy of the NV12 frame and one
        swscale pass. ``image`` becomes the RGB detector-size image the CPU backend would have
        made, ``source`` the full-resolution frame as a PyAV NV12 frame tagged with its colours.
        """
        out = []
        for f in frames:
            img = f.image
            if not isinstance(img, DeviceNV12):  # already host pixels (an ArraySource)
                out.append(f)
                continue
            with self._device():
                full = _host_frame(img)
            full.colorspace = _AVCOL_SPC[img.standard]
            full.color_range = _AVCOL_RANGE[img.full_range]
            box = f.letterbox
            rgb = full.reformat(width=box.new_w, height=box.new_h, format="rgb24",
                                interpolation=INTERPOLATION).to_ndarray()
            out.append(dataclasses.replace(f, image=rgb, source=full))
        return out

    def close(self) -> None:
        with self._device():
            self.stream.synchronize()


def _host_frame(img: DeviceNV12) -> Any:
    """A host copy of a device frame as a PyAV frame: NV12 (one copy of the array), or for an odd
    size, which PyAV's NV12 cannot hold, YUV 4:2:0 planes."""
    import av

    nv12 = to_numpy(img.data)
    w, h = img.width, img.height
    if w % 2 == 0 and h % 2 == 0 and nv12.shape == (h * 3 // 2, w):
        return av.VideoFrame.from_ndarray(nv12, format="nv12")
    frame = av.VideoFrame(w, h, "yuv420p")
    cw, ch = (w + 1) // 2, (h + 1) // 2
    uv = nv12[h:h + ch]
    planes: list[Any] = list(frame.planes)
    for plane, arr in zip(planes, (nv12[:h, :w], uv[:, 0:2 * cw:2], uv[:, 1:2 * cw:2])):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :arr.shape[1]] = arr
    return frame
