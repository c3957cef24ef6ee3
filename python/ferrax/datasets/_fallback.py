"""One call for example scripts: a named image data set, or the bundled sample offline."""

from __future__ import annotations

import sys
from typing import TextIO

from . import _loader, fashion_mnist, mnist

_LOADERS = {"mnist": mnist, "fashion_mnist": fashion_mnist}


def load_or_sample(name: str, out: TextIO | None = None
                   ) -> tuple[_loader.LoadResult, str]:
    """``(data, name used)`` for ``"mnist"``, ``"fashion_mnist"`` or ``"sample"``.

    When the named set cannot be found or downloaded, says why in one line on `out`
    (stdout by default) and returns ``mnist.load_sample()`` instead, named "sample".
    """
    if name == "sample":
        return mnist.load_sample(), "sample"
    loader = _LOADERS.get(name)
    if loader is None:
        raise ValueError(f"load_or_sample: unknown data set {name!r}; expected one of "
                         f"{', '.join(sorted(_LOADERS))} or 'sample'")
    try:
        return loader.load_data(), name
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0].rstrip(".")
        print(f"{name} is not available here: {reason}. Training on the bundled "
              f"MNIST sample instead.", file=out or sys.stdout, flush=True)
        return mnist.load_sample(), "sample"
