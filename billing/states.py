"""Invoice and Stripe-push states, and the only moves between them.

As Lago declares its invoice states: each machine is a mapping state -> the states it
may move to, and one check that every writer goes through, so a paid invoice can never
be voided, nor a void one paid, whichever file does the writing. Staying in a state is
not a move and is always allowed (webhooks and retries re-apply what already happened).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from core.errors import Conflict


class InvoiceStatus(StrEnum):
    # The open period's preview, rated on the fly; never stored.
    draft = "draft"
    # Finalized, awaiting payment.
    open = "open"
    paid = "paid"
    payment_failed = "payment_failed"
    # Cancelled before payment; it keeps its number so the series stays gap-free.
    void = "void"


class StripeState(StrEnum):
    """How far the push of a finalized invoice to Stripe has got."""

    # Not in Stripe yet.
    none = "none"
    # The Stripe invoice exists (with its items); payment not attempted yet.
    invoiced = "invoiced"
    # Payment attempted (succeeded or declined: Stripe's dunning takes over).
    collected = "collected"
    # Voided (or its draft and pending items removed) in Stripe.
    voided = "voided"
    # Nothing to collect (a zero invoice): never pushed.
    skipped = "skipped"


class IllegalTransition(Conflict):
    """A state change the machine does not allow (409)."""


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    name: str
    moves: Mapping[S, frozenset[S]]

    def allows(self, current: S | str, target: S) -> bool:
        return current == target or target in self.moves[self._state(current)]

    def check(self, current: S | str, target: S) -> S:
        """``target`` if ``current`` may move there, else an ``IllegalTransition``."""
        if not self.allows(current, target):
            allowed = ", ".join(sorted(self.moves[self._state(current)])) or "nothing"
            raise IllegalTransition(
                f"{self.name} cannot go from {current} to {target}; from {current} it can go "
                f"to {allowed}"
            )
        return target

    def sources(self, target: S) -> list[S]:
        """Every state from which ``target`` may be reached (itself included): the
        guard for set-based updates (``where status in sources``)."""
        return [state for state in self.moves if self.allows(state, target)]

    def _state(self, value: S | str) -> S:
        return next(state for state in self.moves if state == value)


_I = InvoiceStatus
INVOICE = StateMachine[InvoiceStatus](
    "an invoice",
    {
        # Finalization: open if something is due, paid at once if nothing is.
        _I.draft: frozenset({_I.open, _I.paid}),
        _I.open: frozenset({_I.paid, _I.payment_failed, _I.void}),
        _I.payment_failed: frozenset({_I.paid, _I.void}),
        # Final. A paid invoice is corrected with a credit note, never voided.
        _I.paid: frozenset(),
        _I.void: frozenset(),
    },
)

_S = StripeState
STRIPE_PUSH = StateMachine[StripeState](
    "a Stripe push",
    {
        _S.none: frozenset({_S.invoiced, _S.voided}),
        _S.invoiced: frozenset({_S.collected, _S.voided}),
        # An invoice whose payment failed may still be voided here, and then in Stripe.
        _S.collected: frozenset({_S.voided}),
        _S.voided: frozenset(),
        _S.skipped: frozenset(),
    },
)
