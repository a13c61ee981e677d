"""The demo workflow: the square root of a number by Newton's method.

``plait demo`` runs :class:`NewtonSqrtWorkChain` end to end and prints its
provenance.  It is small but shows every piece a real workflow uses:

* calcfunctions that create data (:func:`newton_step`, :func:`residual`);
* a work chain outline with ``while_`` and ``if_``/``else_`` and an exit code;
* two children launched in one step with ``self.submit``, running
  concurrently, gathered into the context with ``ToContext``;
* report messages (``plait process report PK``);
* outputs returned by the work chain (RETURN links to data the calcfunctions
  created).

Each iteration computes, side by side, the residual ``|x*x - a|`` of the
current estimate and Newton's next estimate ``(x + a/x) / 2``; the loop
stops when the residual is below the tolerance.  The first estimate is
``a`` itself.

Run it from Python::

    from plait import run_get_node
    from plait.workflows.demo import NewtonSqrtWorkChain
    outputs, node = run_get_node(NewtonSqrtWorkChain, a=2.0)
"""

from __future__ import annotations

from typing import Any

from plait.engine import ToContext, WorkChain, calcfunction, if_, while_
from plait.orm import Float, Int

__all__ = ["NewtonSqrtWorkChain", "newton_step", "residual"]


@calcfunction
def newton_step(x: Float, a: Float) -> Float:
    """Newton's next estimate of sqrt(a) from ``x``."""
    return Float((x.value + a.value / x.value) / 2.0)


@calcfunction
def residual(x: Float, a: Float) -> Float:
    """How far ``x`` is from being the square root of ``a``: ``|x*x - a|``."""
    return Float(abs(x.value * x.value - a.value))


def _positive(value: Any) -> str | None:
    return None if value.value > 0 else f"must be a positive number, got {value.value}"


class NewtonSqrtWorkChain(WorkChain):
    """The square root of ``a`` by Newton's method, one pair of calcfunctions per iteration."""

    @classmethod
    def define(cls, spec: Any) -> None:
        super().define(spec)
        spec.input("a", valid_type=Float, validator=_positive, help="the number whose square root is wanted")
        spec.input(
            "tolerance",
            valid_type=Float,
            default=lambda: Float(1e-6),
            validator=_positive,
            help="stop when |x*x - a| is below this",
        )
        spec.input(
            "max_iterations",
            valid_type=Int,
            default=lambda: Int(20),
            validator=_positive,
            help="give up after this many iterations",
        )
        spec.output("root", valid_type=Float, help="the estimate of sqrt(a)")
        spec.output("residual", valid_type=Float, help="|root*root - a|")
        spec.exit_code(300, "ERROR_NOT_CONVERGED", "no convergence after {iterations} iterations")
        spec.outline(
            cls.setup,
            while_(cls.should_iterate)(cls.iterate, cls.inspect),
            if_(cls.is_converged)(cls.finalize).else_(cls.give_up),
        )

    def setup(self) -> None:
        self.ctx.x = self.inputs.a
        self.ctx.iteration = 0
        self.ctx.residual = None
        self.report(f"computing sqrt({self.inputs.a.value}) to a tolerance of {self.inputs.tolerance.value}")

    def should_iterate(self) -> bool:
        return not self.is_converged() and self.ctx.iteration < self.inputs.max_iterations.value

    def is_converged(self) -> bool:
        return self.ctx.residual is not None and self.ctx.residual < self.inputs.tolerance.value

    def iterate(self) -> ToContext:
        self.ctx.iteration += 1
        a = self.inputs.a
        label = f"iteration_{self.ctx.iteration}"
        return ToContext(
            check=self.submit(residual, x=self.ctx.x, a=a, metadata={"call_link_label": f"residual_{label}"}),
            step=self.submit(newton_step, x=self.ctx.x, a=a, metadata={"call_link_label": f"step_{label}"}),
        )

    def inspect(self) -> None:
        self.ctx.residual = self.ctx.check.outputs.result.value
        self.report(
            f"iteration {self.ctx.iteration}: x = {self.ctx.x.value:.12g}, residual {self.ctx.residual:.3g}"
        )
        if not self.is_converged():
            self.ctx.x = self.ctx.step.outputs.result

    def finalize(self) -> None:
        self.out("root", self.ctx.x)
        self.out("residual", self.ctx.check.outputs.result)
        self.report(
            f"converged after {self.ctx.iteration} iterations: "
            f"sqrt({self.inputs.a.value}) = {self.ctx.x.value:.12g}"
        )

    def give_up(self) -> Any:
        self.report(f"not converged after {self.ctx.iteration} iterations")
        return self.exit_codes.ERROR_NOT_CONVERGED.format(iterations=self.ctx.iteration)
