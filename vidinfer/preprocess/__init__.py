"""Image preparation for models: letterbox geometry, batch filling, crops for secondary stages.

The NumPy functions here are also the references for the CuPy kernels of the GPU backend.
"""

from vidinfer.preprocess.crops import crop_resize_rgb, crop_resize_yuv420
from vidinfer.preprocess.letterbox import PAD_VALUE, InputConvention, Letterbox, fill_batch_slot

__all__ = ["InputConvention", "Letterbox", "PAD_VALUE", "fill_batch_slot", "crop_resize_rgb", "crop_resize_yuv420"]
