"""Host syncs in tests: :func:`cuda_sync_errors`, CUDA's own sync debug mode for the tests that run
on a GPU, and :class:`HostReadMode`, its CPU stand-in, which raises on the tensor operations that make
a CUDA device wait for the host to read a value.

``torch.cuda.set_sync_debug_mode("error")`` needs a GPU, so the tests that use it skip on the CPU
machines CI runs on. This mode catches the same mistakes at the Python level on any device: a
value read (``item``, ``bool``/``int``/``float`` of a tensor, ``tolist``, ``.cpu()``), an operation
whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``, ``bincount``,
``argwhere``) and indexing with a boolean mask or a 0-dim tensor (``x[t.argmax()]`` reads the index
on the host; ``index_select`` does not). It does not see reads made inside a C++ operator that
Python never calls; the CUDA tests remain the final word.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

HOST_READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu,
    torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__,
    torch.nonzero, torch.Tensor.nonzero, torch.argwhere, torch.masked_select, torch.Tensor.masked_select,
    torch.unique, torch.Tensor.unique, torch.unique_consecutive, torch.bincount, torch.Tensor.bincount,
}


def _reads_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and (i.dtype == torch.bool or i.dim() == 0) for i in items)


class HostReadMode(TorchFunctionMode):
    """Inside ``with HostReadMode():`` any host read listed in the module docstring raises RuntimeError."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise RuntimeError(f"host read: {getattr(func, '__name__', func)}")
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and _reads_index(args[1]):
            raise RuntimeError(f"host read: {func.__name__} with a boolean or 0-dim tensor index")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def cuda_sync_errors():
    """CUDA's own check, which needs a GPU: sync debug mode at "error" for the block (every host sync
    raises RuntimeError)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")
