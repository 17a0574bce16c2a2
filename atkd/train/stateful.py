"""Methods that keep state across training steps, registered from outside the package.

A divergence (atkd.losses.register_divergence) is a function of one token's two distributions. Some KD
methods also change over training: TAID's interpolated target moves from the student towards the teacher
on a schedule adapted to the loss; DistiLLM's replay buffer fills up. Such a method is a class registered
here and named in a method's config (`stateful: {name: taid, t_start: 0.4}`). The training loop uses an
instance in place of the loss:

- `method(student_logits, teacher, labels, num_tokens=None)`: the step's loss (it wraps the configured
  loss, `self.loss`, a `KDLoss`, and may change what it is given);
- `method.after_step(step, stats)`: after every optimizer step, with the step's number (1-based) and
  stats (`loss`, `tokens`, `target_tokens`, ...);
- `method.state_dict()` / `method.load_state_dict(state)`: saved with every resumable checkpoint and
  restored on resume, so a resumed run continues exactly;
- `method.config`: the wrapped loss's config (what the rest of training reads: does it need a teacher?);
- `dense_teacher = True` (optional class attribute): the method needs the teacher's full logits, so a
  config giving it a sparse (top-K) teacher cache fails when it is checked, before any job.

The constructor is called as `cls(loss, total_steps=N, **params)`. Validation measures the plain CE
and never calls the method. A method reads the logits, so it does not combine with `fused_head`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from atkd.losses import KDLoss


class StatefulMethod(Protocol):
    """What the training loop needs of a stateful method (see the module docstring)."""

    loss: KDLoss

    def __call__(self, student_logits: Any, teacher: Any, labels: Any, num_tokens: Any = None) -> Any: ...

    def after_step(self, step: int, stats: Mapping[str, float]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


STATEFUL: dict[str, type] = {}


def register_stateful(name: str) -> Callable[[type], type]:
    """Class decorator: register a stateful method under `name` (`stateful: {name: ...}` in a method)."""

    def wrap(cls: type) -> type:
        old = STATEFUL.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"stateful method {name!r} is already registered")
        STATEFUL[name] = cls
        return cls

    return wrap


def build_stateful(spec: Mapping[str, Any], loss: KDLoss, total_steps: int) -> StatefulMethod:
    """The stateful method `spec` (`{name, **params}`) around `loss`; ValueError naming the valid names
    or the bad parameter."""
    params = dict(spec)
    name = params.pop("name", None)
    if name not in STATEFUL:
        valid = ", ".join(sorted(STATEFUL)) or "none registered (list the module that defines it in plugins)"
        raise ValueError(f"stateful: unknown method {name!r}; valid: {valid}")
    try:
        return STATEFUL[name](loss, total_steps=total_steps, **params)
    except TypeError as err:  # an unknown parameter
        raise ValueError(f"stateful.{name}: {err}") from None
