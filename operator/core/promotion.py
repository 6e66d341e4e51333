"""Which ModelPromotion run a write belongs to, and the namespace of the
annotations the operator writes (on the resources it promotes and on the
ModelPromotion itself)."""

from __future__ import annotations

from dataclasses import dataclass

ANNOTATION_PREFIX = "deploy.mlops.dev"


@dataclass(frozen=True)
class PromotionRef:
    """The ModelPromotion a write belongs to."""

    namespace: str
    name: str
    uid: str
    generation: int
    retry: int = 0  # the run of this generation: 0, then one more per retry request

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def run(self) -> str:
        """The run a write belongs to, as its annotation says: ``3``, or ``3.1`` for a retry."""
        return f"{self.generation}.{self.retry}" if self.retry else str(self.generation)
