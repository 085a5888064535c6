"""What `fuse` and `inspect` found: per site, what was done and why; as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gn_deploy.fusion.site import GroupNormSite, Refusal
from gn_deploy.fusion.verify import Proof

FUSED = "fused"
UNCHANGED = "unchanged"
REFUSED = "refused"
FOUND = "found"


@dataclass
class SiteReport:
    name: str
    status: str
    family: str = ""
    op_type: str = ""
    nodes: list[str] = field(default_factory=list)
    num_groups: int | None = None
    epsilon: float | None = None
    channels: int | None = None
    activation: str = "none"
    max_abs_error: float | None = None
    rel_l2: float | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of_site(cls, site: GroupNormSite, status: str, proof: Proof | None) -> SiteReport:
        return cls(
            name=site.name,
            status=status,
            family=site.family,
            op_type=site.nodes[0].op_type,
            nodes=[n.name or n.op_type for n in site.nodes],
            num_groups=site.num_groups,
            epsilon=site.epsilon,
            channels=site.channels,
            activation=site.activation.name.lower(),
            max_abs_error=None if proof is None else _finite(proof.max_abs_error),
            rel_l2=None if proof is None else _finite(proof.rel_l2),
            reason="" if proof is None or proof.ok else proof.reason,
            warnings=list(site.warnings),
        )

    @classmethod
    def of_refusal(cls, refusal: Refusal) -> SiteReport:
        return cls(
            name=refusal.node,
            status=REFUSED,
            op_type=refusal.op_type,
            nodes=[refusal.node],
            reason=refusal.reason,
            warnings=list(refusal.warnings),
        )


def _finite(v: float) -> float | None:
    return v if v == v else None  # NaN -> None in JSON


@dataclass
class FuseReport:
    input: str
    target: str
    output: str | None = None
    sites: list[SiteReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for s in self.sites if s.status == status)

    def to_json(self) -> str:
        counts = {s: self.count(s) for s in (FUSED, UNCHANGED, REFUSED, FOUND)}
        return json.dumps({**asdict(self), "counts": counts}, indent=2)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    def table(self) -> str:
        head = ("site", "status", "family", "G", "C", "eps", "act", "rel L2", "reason")
        rows = [head]
        for s in self.sites:
            rows.append(
                (
                    s.name,
                    s.status,
                    s.family or s.op_type,
                    _txt(s.num_groups),
                    _txt(s.channels),
                    "" if s.epsilon is None else f"{s.epsilon:.0e}",
                    s.activation if s.status != REFUSED else "",
                    "" if s.rel_l2 is None else f"{s.rel_l2:.1e}",
                    s.reason,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
            for r in rows
        ]
        return "\n".join(line.rstrip() for line in lines)

    def summary(self) -> str:
        found = len(self.sites) - self.count(REFUSED)
        parts = [f"{found} GN site(s) found"]
        if self.output is not None:
            parts.append(f"{self.count(FUSED)} fused")
            if self.count(UNCHANGED):
                parts.append(f"{self.count(UNCHANGED)} already in target form")
        parts.append(f"{self.count(REFUSED)} refused")
        return ", ".join(parts) + f" ({self.seconds:.2f} s)"


def _txt(v: int | None) -> str:
    return "" if v is None else str(v)
