"""Metrics that carry their own reduction, so a number is never patched after it is collected.

A worker records one value per event (a micro-batch, an optimizer step) into a `Metric` that says how the
values combine: `mean`, `sum` or `max`. The driver's worker group combines every rank's values with that same
reduction (`reduce_metrics`). A quantity that is already the same on every rank (an all-reduced loss, the
gradient norm, a step skipped on all ranks) is `replicated`: it is combined over one rank's values only, so a
`sum` of it is not counted once per rank.

    actor/entropy     Metric("mean")                  one value per micro-batch on every rank
    actor/pg_loss     Metric("mean", replicated=True)  the all-reduced mini-batch loss, one per optimizer step
    actor/skipped_steps Metric("sum", replicated=True) 1 per optimizer step skipped on every rank
"""

from __future__ import annotations

from dataclasses import dataclass, field

REDUCTIONS = ("mean", "sum", "max")


@dataclass
class Metric:
    reduction: str
    values: list[float] = field(default_factory=list)
    replicated: bool = False  # the same values on every rank: combine one rank's, not all of them

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown metric reduction {self.reduction!r}; available: {list(REDUCTIONS)}")

    def add(self, value) -> None:
        self.values.append(float(value))

    def value(self) -> float:
        return reduce_values(self.values, self.reduction)


def reduce_values(values: list[float], reduction: str) -> float:
    if not values:
        raise ValueError("a metric with no values")
    if reduction == "mean":
        return sum(values) / len(values)
    if reduction == "sum":
        return float(sum(values))
    return max(values)


def reduce_metrics(per_rank: list[dict]) -> dict[str, float]:
    """Every rank's {name: Metric} -> {name: float}, each metric by its own reduction over the values of all
    ranks (of rank 0 alone when replicated). A plain number (a worker without reductions) counts as a mean."""
    names = list(dict.fromkeys(name for metrics in per_rank for name in metrics))
    out = {}
    for name in names:
        metrics = [m[name] if isinstance(m[name], Metric) else Metric("mean", [float(m[name])])
                   for m in per_rank if name in m]
        kinds = {(m.reduction, m.replicated) for m in metrics}
        if len(kinds) != 1:
            raise ValueError(f"metric {name!r} has different reductions on different ranks: {sorted(kinds)}")
        reduction, replicated = kinds.pop()
        values = metrics[0].values if replicated else [v for m in metrics for v in m.values]
        out[name] = reduce_values(values, reduction)
    return out
