import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tinydata import write_tiny_fmnist  # noqa: E402


@pytest.fixture
def tiny_fmnist(tmp_path, monkeypatch):
    """``$LTBENCH_DATA`` pointing at a tiny, learnable Fashion-MNIST in the real IDX format."""
    root = write_tiny_fmnist(tmp_path / "data")
    monkeypatch.setenv("LTBENCH_DATA", str(root))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-tensor tests: several times faster on 2 shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
