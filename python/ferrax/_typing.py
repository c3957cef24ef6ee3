"""Type aliases shared by ferrax's annotations (no runtime behaviour)."""

from __future__ import annotations

import os
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

# A float32 NumPy array, what the engine reads and returns.
Float32Array: TypeAlias = npt.NDArray[np.float32]
# A file-system path, as `open` accepts it.
PathLike: TypeAlias = str | os.PathLike[str]
# The logs dict callbacks receive: metric name -> value ("outputs" -> array in predict).
Logs: TypeAlias = dict[str, Any]
# A JSON-like configuration dict (get_config / from_config).
Config: TypeAlias = dict[str, Any]
# A shape as Keras prints it: the batch axis (None) first.
Shape: TypeAlias = tuple[int | None, ...]
