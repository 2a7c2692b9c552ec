"""The registry of training strategies and of the methods the book compares.

A *strategy* is a loss (which terms train the student); a *method* is a strategy
plus where the student's weights start and whether early blocks are frozen. Every
grid, claim and chapter reads :data:`METHODS`; nothing else lists them.

============================  ===========  ====================  ==========  =======
method                        strategy     student starts from   frozen      teacher
============================  ===========  ====================  ==========  =======
``scratch``                   scratch      random weights        --          --
``transfer``                  transfer     the pre-trained init  --          --
``transfer-frozen``           transfer     the pre-trained init  early blocks --
``kd``                        kd           random weights        --          yes
``at``                        at           random weights        --          yes
``kd+at``                     kd+at        random weights        --          yes
``transfer+kd``               kd           the pre-trained init  --          yes
``transfer+at``               at           the pre-trained init  --          yes
``transfer+kd+at``            kd+at        the pre-trained init  --          yes
============================  ===========  ====================  ==========  =======

``transfer-frozen`` is the authors' related code's baseline (the stem through the
third stage frozen, the rest fine-tuned); ``transfer+at`` is their taught student
(the same init, attention transfer from a stronger teacher).
"""

from __future__ import annotations

import dataclasses

#: strategy name -> (uses the KD term, uses the AT term)
STRATEGIES: dict[str, tuple[bool, bool]] = {
    "scratch": (False, False),
    "transfer": (False, False),
    "kd": (True, False),
    "at": (False, True),
    "kd+at": (True, True),
}


def check_strategy(name: str) -> str:
    """Return ``name`` if it is a known strategy, else raise naming the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return name


def uses_teacher(strategy: str) -> bool:
    """Whether ``strategy`` needs a teacher (kd, at, kd+at)."""
    kd, at = STRATEGIES[check_strategy(strategy)]
    return kd or at


@dataclasses.dataclass(frozen=True)
class Method:
    """One compared method: ``strategy`` plus a pre-trained (or random) start and freezing."""

    name: str
    strategy: str
    pretrained: bool
    frozen: bool
    label: str

    @property
    def taught(self) -> bool:
        """Whether the method learns from a teacher."""
        return uses_teacher(self.strategy)

    @property
    def uses_kd(self) -> bool:
        return STRATEGIES[self.strategy][0]

    @property
    def uses_at(self) -> bool:
        return STRATEGIES[self.strategy][1]


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("scratch", "scratch", False, False, "labels only, random init"),
    Method("transfer", "transfer", True, False, "fine-tuned from the pre-trained init"),
    Method("transfer-frozen", "transfer", True, True, "fine-tuned, early blocks frozen (the authors' baseline)"),
    Method("kd", "kd", False, False, "soft targets, random init"),
    Method("at", "at", False, False, "attention transfer, random init"),
    Method("kd+at", "kd+at", False, False, "soft targets and attention transfer, random init"),
    Method("transfer+kd", "kd", True, False, "soft targets, from the pre-trained init"),
    Method("transfer+at", "at", True, False, "attention transfer, from the pre-trained init (the authors' student)"),
    Method("transfer+kd+at", "kd+at", True, False, "both terms, from the pre-trained init"),
)}


def method(name: str) -> Method:
    """The :class:`Method` called ``name``, or an error listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def soft_target_methods() -> list[str]:
    """Methods that need the teacher's label space (a KD term)."""
    return [m.name for m in METHODS.values() if m.uses_kd]
