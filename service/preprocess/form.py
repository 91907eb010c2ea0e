"""What MNIST form is: the frame, the box and the centre every other module of the package aims at."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
ByteArray = NDArray[np.uint8]
BoolArray = NDArray[np.bool_]

SIZE: Final = 28
#: MNIST fitted each digit into a 20x20 box inside the 28x28 frame.
BOX: Final = 20
#: MNIST's centre of mass sits at (14, 14) in pixel-index coordinates (measured on the test set).
CENTRE: Final = 14.0

#: Larger images are box-averaged down to about this many pixels before any numpy work. A digit
#: needs far fewer, and averaging keeps thin strokes as (fainter) ink.
WORK_PIXELS: Final = 256 * 256
