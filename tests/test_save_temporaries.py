"""A save killed mid-write leaves its temporary file; the next save to that path
removes it (and any left by saves whose process is gone), keeps a running save's,
and loading never reads one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import ferrax
from ferrax import layers

_KILLED_SAVE = """
import os, signal, sys
import numpy as np
import ferrax
from ferrax import layers
m = ferrax.Sequential([ferrax.Input((4,)), layers.Dense(3)])
m.predict(np.ones((1, 4), np.float32), verbose=0)
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed before the rename
m.save(sys.argv[1])
"""


def _model() -> ferrax.Model:
    ferrax.utils.set_random_seed(2)
    m = ferrax.Sequential([ferrax.Input((4,)), layers.Dense(3)])
    m.predict(np.ones((1, 4), np.float32), verbose=0)
    return m


def _temporaries(path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids: POSIX")
def test_the_next_save_removes_a_killed_saves_temporary_file(tmp_path):
    path = tmp_path / "m.ferrax"
    model = _model()
    model.save(path)
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], timeout=120)
    assert proc.returncode != 0
    left = _temporaries(path)
    assert len(left) == 1 and left[0].startswith(".m.ferrax.")
    # loading reads the complete file, never the temporary one
    got = ferrax.models.load_model(path)
    np.testing.assert_array_equal(got.get_weights()[0], model.get_weights()[0])
    model.save(path)
    assert _temporaries(path) == []


@pytest.mark.skipif(os.name != "posix", reason="process ids: POSIX")
def test_a_running_saves_temporary_file_is_kept(tmp_path):
    path = tmp_path / "m.weights.safetensors"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_tmp = tmp_path / f".{path.name}.{running.pid}.0123456789ab.tmp"
        # (above Linux's largest process id, 2**22: no such process)
        dead_tmp = tmp_path / f".{path.name}.{2**22 + 7}.0123456789ab.tmp"
        old_style = tmp_path / f".{path.name}.0123456789ab.tmp"
        other = tmp_path / ".other.ferrax.99.0123456789ab.tmp"
        # (another target's, "m.weights.safetensors.bak": its name matches the pattern)
        longer = tmp_path / f".{path.name}.bak.{2**22 + 7}.0123456789ab.tmp"
        for p in (live_tmp, dead_tmp, old_style, other, longer):
            p.write_bytes(b"partial")
        os.utime(old_style, (time.time() - 7200, time.time() - 7200))
        _model().save_weights(path)
        assert _temporaries(path) == sorted([live_tmp.name, other.name, longer.name])
    finally:
        running.kill()
        running.wait()
