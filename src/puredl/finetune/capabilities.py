"""The capabilities a progressive run teaches and measures: one table, read by every module.

Each row says which data kind trains the capability, which phase of the bundled recipe teaches
it, whether its headline number is better when lower, which measure is the headline (the
entry's ``score``), and how many items each measure scores by default (the research note's
evaluation sizes; ``evaluation.max_eval`` overrides them).

>>> CAPABILITIES["medical_terms"], capability("reasoning").data
('terminology', 'medical_mcq')
>>> sorted(LOWER_IS_BETTER)
['fluency', 'korean_text']
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capability:
    """One row of the table."""

    name: str  # what it is called in reports and metrics.json
    data: str  # the data kind that trains it (datasets.KINDS)
    phase: int  # the phase of the bundled recipe that teaches it
    lower_is_better: bool  # perplexity: lower; accuracies: higher
    primary: str  # the measure whose value is the entry's ``score``
    eval_sizes: dict[str, int] = field(default_factory=dict)  # measure group -> default item count


TABLE: tuple[Capability, ...] = (
    Capability("fluency", "korean_text", 0, True, "heldout_no_eos", {"heldout": 40}),
    Capability(
        "terminology", "medical_terms", 1, False, "taught", {"taught": 48, "heldout": 24, "transfer": 24}
    ),
    Capability("reasoning", "medical_mcq", 2, False, "taught", {"taught": 32, "heldout": 71}),
)

CAPABILITIES = {c.data: c.name for c in TABLE}  # data kind -> capability name
LOWER_IS_BETTER = frozenset(
    [c.name for c in TABLE if c.lower_is_better] + [c.data for c in TABLE if c.lower_is_better]
)
_BY_KEY = {**{c.name: c for c in TABLE}, **{c.data: c for c in TABLE}}


def capability(name: str) -> Capability:
    """The row of a capability, given its name (``fluency``) or its data kind (``korean_text``)."""
    try:
        return _BY_KEY[name]
    except KeyError:
        raise ValueError(
            f"unknown capability {name!r}; expected one of {', '.join(c.name for c in TABLE)} "
            f"(or a data kind: {', '.join(c.data for c in TABLE)})"
        ) from None


def capability_name(name: str) -> str:
    """``fluency``/``terminology``/``reasoning`` for a capability or a data kind.

    >>> capability_name("korean_text"), capability_name("reasoning")
    ('fluency', 'reasoning')
    """
    return capability(name).name


def data_kind(name: str) -> str:
    """The data kind (``korean_text``...) behind a capability or data kind name."""
    return capability(name).data


def lower_is_better(name: str) -> bool:
    """True for perplexity-like capabilities; unknown names count as higher-is-better."""
    row = _BY_KEY.get(name)
    return bool(row and row.lower_is_better)
