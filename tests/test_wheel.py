"""Packaging: the version has one source, and the engine runs on CPUs without AVX."""

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferrax

ROOT = Path(__file__).resolve().parents[1]


def _cargo_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def test_installed_version_is_the_cargo_version():
    want = _cargo_version()
    assert ferrax.__version__ == want
    assert importlib.metadata.version("ferrax") == want


def test_package_is_typed():
    assert (Path(ferrax.__file__).parent / "py.typed").exists()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed")
def test_training_runs_on_a_cpu_without_avx():
    # Nehalem: SSE4.2 but no AVX/AVX2/FMA. Kernels must be chosen at run time.
    result = subprocess.run(
        ["qemu-x86_64", "-cpu", "Nehalem", sys.executable,
         str(ROOT / "tests" / "scripts" / "smoke_training.py")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cpu features sse4.2:" in result.stdout
    assert "accuracy" in result.stdout
