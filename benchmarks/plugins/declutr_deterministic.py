"""Plugin of ``bin/gpu-check``: deterministic CUDA kernels, so that a resumed run can equal an
uninterrupted one bit for bit.

Importing it (``--include-package declutr_deterministic``) asks torch for deterministic
algorithms (``warn_only``: an op without one warns instead of failing) and routes
scaled-dot-product attention to its math kernel, whose backward pass has no atomic adds (the
memory-efficient and flash kernels accumulate key/query gradients with atomics). cuBLAS also
needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which gpu-check sets. On CPU it changes nothing that
matters: the CPU kernels are deterministic already.
"""

from __future__ import annotations

import torch

torch.use_deterministic_algorithms(True, warn_only=True)
if torch.cuda.is_available():
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_math_sdp(True)
