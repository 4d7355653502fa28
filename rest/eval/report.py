"""Score files: one JSON with everything and one markdown table, like BFCL's score folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class CategoryScore:
    category: str
    correct: int = 0
    total: int = 0
    expressible: int | None = None  # entries whose ground truth the output format can write (BFCL multi-turn)
    errors: list[dict] = field(default_factory=list)  # first few failures, for reading
    prompt_overflow: int = 0  # entries failed because a prompt did not fit the model's context (not sent)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def micro_average(scores: list[CategoryScore], name: str = "overall") -> CategoryScore:
    return CategoryScore(name, sum(s.correct for s in scores), sum(s.total for s in scores),
                         prompt_overflow=sum(s.prompt_overflow for s in scores))


def markdown_table(title: str, scores: list[CategoryScore]) -> str:
    show_expr = any(s.expressible is not None for s in scores)
    head = "| category | accuracy | correct | total |" + (" expressible |" if show_expr else "")
    lines = [f"## {title}", "", head, "|---|---|---|---|" + ("---|" if show_expr else "")]
    for s in scores:
        row = f"| {s.category} | {100 * s.accuracy:.2f} | {s.correct} | {s.total} |"
        if show_expr:
            row += f" {'' if s.expressible is None else s.expressible} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_scores(out_dir: str | Path, name: str, title: str, scores: list[CategoryScore], meta: dict) -> dict:
    """Writes NAME_score.json and NAME_score.md into out_dir; returns the JSON payload."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "scores": {s.category: {**asdict(s), "accuracy": s.accuracy} for s in scores},
    }
    (out / f"{name}_score.json").write_text(json.dumps(payload, indent=2, default=str))
    (out / f"{name}_score.md").write_text(markdown_table(title, scores))
    return payload
