"""The WildGuard classifier (allenai/wildguard, 7B, gated): refusal and harm labels per trace.

Official prompt layout and answer format (deepconf_assets.core.wildguard), greedy decoding, up to
128 new tokens; vLLM when available (one engine per run, every item in one submission, items of the
same prompt adjacent so they share the prefix cache), transformers otherwise. Beyond the official
package, P(refusal) and P(harmful response) are read from the classifier's next-token log-probs of
"yes" and "no" at those answer lines (renormalised over the two).

Weights are never downloaded at run time: `model_dir`, else $DEEPCONF_WILDGUARD_DIR, else
$DEEPCONF_MODEL_DIR/wildguard, else the Hugging Face cache (`hf download allenai/wildguard` after
accepting its licence). Without them `available()` says why, and the asset reports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from deepconf_assets.core import wildguard
from resources.generation_types import SamplingSettings

HF_ID = "allenai/wildguard"
LABEL_DTYPES = {"refused": "boolean", "harmful_request": "boolean", "harmful_response": "boolean",
                "p_refusal": "float64", "p_harmful_response": "float64", "parse_error": "boolean",
                "raw_output": "object"}
LABEL_COLUMNS = list(LABEL_DTYPES)


class WildGuardResource(ConfigurableResource):
    model_dir: str = Field("", description="Folder with WildGuard weights; empty = environment / HF cache")
    backend: str = Field("auto", description="auto | vllm | transformers")
    dtype: str = Field("auto")
    batch_sequences: int = Field(32, ge=1, description="transformers batch size; shard size for vLLM")
    max_model_len: int = Field(4096, ge=256)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = Field(False)

    _engine: object = PrivateAttr(default=None)

    def locate(self) -> tuple[Path | None, str]:
        """(weights folder, "") or (None, why not)."""
        candidates = [self.model_dir, os.environ.get("DEEPCONF_WILDGUARD_DIR", "")]
        if os.environ.get("DEEPCONF_MODEL_DIR"):
            candidates.append(str(Path(os.environ["DEEPCONF_MODEL_DIR"]) / "wildguard"))
        for candidate in filter(None, candidates):
            folder = Path(candidate)
            if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
                return folder, ""
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(HF_ID, local_files_only=True)), ""
        except Exception:  # noqa: BLE001 - any failure means: not on this machine
            return None, (f"WildGuard weights are not on this machine (looked in model_dir, DEEPCONF_WILDGUARD_DIR, "
                          f"DEEPCONF_MODEL_DIR/wildguard and the Hugging Face cache). Accept the licence of {HF_ID} "
                          f"on the hub, run `hf download {HF_ID}` on a machine with network access, and copy the "
                          f"cache or set DEEPCONF_WILDGUARD_DIR.")

    def _load(self, folder: Path):
        if self._engine is None:
            import importlib.util

            import torch

            use_vllm = self.backend == "vllm" or (
                self.backend == "auto" and importlib.util.find_spec("vllm") and torch.cuda.is_available())
            if use_vllm:
                from resources.vllm_engine import VllmEngine

                self._engine = VllmEngine(folder, self)
            else:
                from resources.transformers_engine import TransformersEngine

                self._engine = TransformersEngine(folder, "cuda" if torch.cuda.is_available() else "cpu", self.dtype)
        return self._engine

    def teardown_after_execution(self, context) -> None:
        if self._engine is not None and hasattr(self._engine, "close"):
            self._engine.close()
        self._engine = None

    def classify(self, folder: Path, prompts: list[str], responses: list[str], log=None) -> pd.DataFrame:
        """One row per (prompt, response) with LABEL_COLUMNS, in input order."""
        engine = self._load(folder)
        texts = [wildguard.render(p, r) for p, r in zip(prompts, responses)]
        order = sorted(range(len(texts)), key=lambda i: (prompts[i], i))  # same prompt together: shared prefix
        raw = [""] * len(texts)

        def finished(indices, traces):
            for i, trace in zip(indices, traces):
                raw[i] = trace.text
            if log:
                log(f"WildGuard: {sum(bool(r) for r in raw)}/{len(texts)} classified")

        greedy = SamplingSettings(temperature=0, max_new_tokens=wildguard.MAX_NEW_TOKENS, logprobs_k=1)
        engine.run(order, [texts[i] for i in order], [0] * len(order), greedy, self.batch_sequences, finished)
        labels = [wildguard.parse(text) for text in raw]
        table = pd.DataFrame({
            "refused": pd.array([x.refusal for x in labels], dtype="boolean"),
            "harmful_request": pd.array([x.harmful_request for x in labels], dtype="boolean"),
            "harmful_response": pd.array([x.harmful_response for x in labels], dtype="boolean"),
            "parse_error": [x.parse_error for x in labels],
            "raw_output": raw,
        })
        table["p_refusal"], table["p_harmful_response"] = self._answer_probabilities(engine, prompts, responses, labels)
        return table[LABEL_COLUMNS]

    def _answer_probabilities(self, engine, prompts, responses, labels):
        """P(yes) at the refusal and harmful-response lines, given the classifier's earlier answers."""
        yes, no = answer_token_ids(engine.tokenizer)
        p = {1: np.full(len(prompts), np.nan), 2: np.full(len(prompts), np.nan)}
        parsed = [i for i, x in enumerate(labels) if not x.parse_error]
        for line in (1, 2):
            texts = [wildguard.forced_prefix(prompts[i], responses[i], line,
                                             (labels[i].harmful_request, labels[i].refusal)) for i in parsed]
            scores = engine.next_token_logprobs(texts, [yes, no]) if texts else np.zeros((0, 2))
            p[line][parsed] = [wildguard.p_yes(a, b) for a, b in scores]
        return p[1], p[2]


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """The first token the classifier writes for " yes" and " no" after an answer line's colon."""
    prefix = tokenizer(wildguard.ANSWER_LINES[1], add_special_tokens=False)["input_ids"]
    ids = []
    for word in (" yes", " no"):
        full = tokenizer(wildguard.ANSWER_LINES[1] + word, add_special_tokens=False)["input_ids"]
        ids.append(full[len(prefix)] if full[: len(prefix)] == prefix else full[-1])
    return ids[0], ids[1]
