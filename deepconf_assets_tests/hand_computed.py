"""Two instances whose policies, votes and metrics the tests work out by hand."""

import numpy as np
import pandas as pd

# Instance A (harmful) and B (benign), five traces each, group window 2.
#   A: tokens [4,4] [2,2,2] [3,3] [5,1,1,5] [4,4,4]   refused 1 0 1 1 0
#      conf_mean 4 2 3 3 4; lowest group 4 2 3 1 4
#   B: tokens [1,1] [1,1] [1,1] [2,2] [2,2]           refused 0 0 0 1 1
A_TOKENS = [[4, 4], [2, 2, 2], [3, 3], [5, 1, 1, 5], [4, 4, 4]]
B_TOKENS = [[1, 1], [1, 1], [1, 1], [2, 2], [2, 2]]


def two_instances() -> tuple[pd.DataFrame, pd.DataFrame]:
    tokens = A_TOKENS + B_TOKENS
    traces = pd.DataFrame(
        {
            "instance_id": ["A"] * 5 + ["B"] * 5,
            "trace_idx": list(range(5)) * 2,
            "token_confidence": [np.array(t, dtype=np.float32) for t in tokens],
            "conf_mean": [float(np.mean(t)) for t in tokens],
            "refused": pd.array([True, False, True, True, False, False, False, False, True, True], dtype="boolean"),
            "n_tokens": [len(t) for t in tokens],
        }
    )
    prompts = pd.DataFrame({"instance_id": ["A", "B"], "prompt_harmful": pd.array([True, False], dtype="boolean")})
    return traces.sample(frac=1.0, random_state=3), prompts  # shuffled: order must come from trace_idx
