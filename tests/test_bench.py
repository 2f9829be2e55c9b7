"""The benchmark commands run end to end on tiny inputs (their timings are not tested)."""

import re

import pytest

from omnitrack.bench import main


def _values(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"^(\w+)=([0-9.]+)$", text, re.M)}


@pytest.mark.parametrize("what", ["deformer", "fit"])
def test_bench_prints_its_step_time(what, capsys):
    args = [what, "--pairs", "2", "--points", "64", "--frames", "8", "--size", "48", "--steps", "2", "--warmup", "1"]
    assert main([*args, "--threads", "1", "--preset", "cpu"]) == 0
    values = _values(capsys.readouterr().out)
    assert values["step_s"] > 0
    if what == "deformer":  # ours beside the upstream-style step, and their ratios
        assert values["upstream_step_s"] > 0 and values["speedup"] > 0 and values["cpu_speedup"] > 0
