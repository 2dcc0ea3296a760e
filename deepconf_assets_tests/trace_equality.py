"""What "the same traces" means when two processes generate them on the CPU.

The sampled tokens, texts, seeds and finish reasons must be identical: the draw depends only on each
trace's seed. Log-probs and confidences may differ in the last float32 bits between processes,
because CPU BLAS kernels (MKL/oneDNN) are not bitwise reproducible from one process to the next
(seen in CI: 4e-6 on one mean log-prob). They must agree within TOLERANCE, the one bound for
every comparison of float32 log-probs computed by different kernels, batches or processes (vLLM
against transformers, a trace alone against the same trace in a batch, a resumed run against an
uninterrupted one): what remains is summation order.
"""

import numpy as np
import pandas as pd

TOLERANCE = 1e-4
ARRAYS = ("token_confidence", "token_logprob")


def assert_same_traces(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    floats = [c for c in a.columns if c not in ARRAYS and pd.api.types.is_float_dtype(a[c])]
    exact = [c for c in a.columns if c not in ARRAYS and c not in floats]
    pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
    np.testing.assert_allclose(a[floats].to_numpy(), b[floats].to_numpy(), rtol=0, atol=TOLERANCE)
    for column in ARRAYS:
        for row, (x, y) in enumerate(zip(a[column], b[column])):
            assert len(x) == len(y), f"{column} row {row}: {len(x)} != {len(y)} tokens"
            np.testing.assert_allclose(x, y, rtol=0, atol=TOLERANCE, err_msg=f"{column} row {row}")
