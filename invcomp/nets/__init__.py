"""Networks only: the pieces that decoders run, and what makes their floats repeatable."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from invcomp.errors import InvcompError


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block's torch work on one CPU thread, restoring the caller's thread count after.

    A decoder must compute the floats its encoder did (the residual layers' entropy model takes its scale indexes
    from a network run on the decoded base), and a convolution's sums are ordered by the thread count: on one thread
    both sides add in the same order, whatever the machine's core count or the user's settings. Used by the layered
    mode's residual layers and by the upsampler."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvcompError("--device cuda asked for, but no CUDA device is available")
    return name
