"""What every generation backend returns: the same fields, computed the same way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepconf_assets.core import confidence


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 256
    logprobs_k: int = confidence.DEFAULT_TOPK
    enable_thinking: bool = False


@dataclass
class GeneratedTrace:
    text: str
    token_ids: list[int]
    token_logprob: np.ndarray  # (T,) float32 log-prob of each sampled token (non-finite kept as is)
    token_confidence: np.ndarray  # (T,) float32 DeepConf C per generated token (clipped)
    nonfinite_logprobs: int  # log-probs clipped, top-k and sampled together
    finish_reason: str  # "stop" (EOS generated and counted in T) or "length"
    seed: int

    @classmethod
    def from_logprobs(cls, text: str, token_ids: list[int], token_logprob: np.ndarray,
                      topk_logprobs: np.ndarray, finish_reason: str, seed: int) -> "GeneratedTrace":
        """Both backends end here, so confidence is computed one way only."""
        topk = np.asarray(topk_logprobs, dtype=np.float64).reshape(len(token_ids), -1)
        conf, clipped = confidence.token_confidence(topk)
        sampled = np.asarray(token_logprob, dtype=np.float32)
        return cls(text=text, token_ids=list(map(int, token_ids)), token_logprob=sampled, token_confidence=conf,
                   nonfinite_logprobs=clipped + int((~np.isfinite(sampled)).sum()),
                   finish_reason=finish_reason, seed=int(seed))


@dataclass
class GenerationStats:
    requested: int = 0
    reused: int = 0  # found in the shard store
    generated: int = 0
    generation_calls: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    shards_written: int = 0
    backend: str = ""
    peak_rss_mb: float = 0.0  # peak resident memory of the generating process

    def add(self, other: "GenerationStats") -> None:
        """Fold in the stats of another generate call (live rounds)."""
        for name in ("requested", "reused", "generated", "generation_calls", "generated_tokens", "shards_written"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0
