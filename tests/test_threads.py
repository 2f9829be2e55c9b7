"""A stage's thread count reaches torch whether or not torch was imported before it was set."""

import subprocess
import sys

import pytest

CHECK = """
import sys
{before}
from omnitrack.workflow.logs import configure_threads
configure_threads(1)
assert ("torch" in sys.modules) == {loaded}, "configure_threads imported torch"
import torch
print(torch.get_num_threads())
"""


@pytest.mark.parametrize("loaded", [False, True])
def test_configure_threads_sets_torch_threads_without_importing_it(loaded):
    code = CHECK.format(before="import torch" if loaded else "", loaded=loaded)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "1"
