"""The speculative (MTP / NEXTN / EAGLE, topk 1) setup both step models price: draft tokens ``T``,
draft steps and the acceptance (glossary of :mod:`gdnlab.acceptance`); :data:`SEED_MTP` is the
seed's setting (SGLang PR #23273)."""
from __future__ import annotations

from dataclasses import dataclass

from ..acceptance import AcceptanceModel, as_model
from ..seed import SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS, SEED_NUM_STEPS
from ._args import pos_int

__all__ = ["MTPConfig", "SEED_MTP"]


@dataclass(frozen=True)
class MTPConfig:
    """Speculative decoding setup (MTP / NEXTN / EAGLE, topk 1).

    Attributes:
        draft_tokens: ``T``, verify positions per step (``--speculative-num-draft-tokens``).
        acceptance: an :class:`gdnlab.acceptance.AcceptanceModel`, or a number read as a fixed mean
            accept length (1..T, SGLang convention).
        num_steps: draft forwards per step (``--speculative-num-steps``); None = ``T - 1`` (the
            topk-1 chain; at least 1).
    """

    draft_tokens: int = SEED_DRAFT_TOKENS
    acceptance: AcceptanceModel | float = sum(SEED_ACCEPT_LEN) / 2
    num_steps: int | None = None

    def __post_init__(self) -> None:
        pos_int("MTPConfig.draft_tokens", self.draft_tokens)
        steps = max(self.draft_tokens - 1, 1) if self.num_steps is None else self.num_steps
        object.__setattr__(self, "num_steps", pos_int("MTPConfig.num_steps", steps))
        object.__setattr__(self, "acceptance", as_model(self.acceptance))

    @property
    def accept_len(self) -> float:
        """Expected tokens per step (mean accepted length, 1..T)."""
        return self.acceptance.mean(self.draft_tokens)


#: the seed's speculative setup: 3 steps, 4 draft tokens, acc len 3.13-3.22 (midpoint 3.175)
SEED_MTP = MTPConfig(draft_tokens=SEED_DRAFT_TOKENS, acceptance=sum(SEED_ACCEPT_LEN) / 2, num_steps=SEED_NUM_STEPS)
