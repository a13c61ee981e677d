"""Processes used by the engine tests.

They live in an importable module (not in a test function) because a
process resumed in another interpreter, or run by a daemon worker, is
imported again from its recorded ``module:QualName``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from plait import ToContext, WorkChain, append_, calcfunction, if_, return_, run, while_, workfunction
from plait.orm import Bool, Code, Dict, Float, Int, List, Str

EVENTS: list[str] = []
EVENTS_LOCK = threading.Lock()


def record(event: str) -> None:
    with EVENTS_LOCK:
        EVENTS.append(event)


@calcfunction
def add(x: Int, y: Int) -> Int:
    return x + y


@calcfunction
def multiply(x: Int, y: Int) -> Int:
    return x * y


@calcfunction
def fail(x: Int) -> Int:
    raise ValueError(f"cannot handle {x.value}")


@workfunction
def add_multiply(x: Int, y: Int, z: Int) -> Int:
    return {"result": multiply(add(x, y), z)}


class Counter(WorkChain):
    """A while_ loop; optional failure through an exit code."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("n", valid_type=Int, default=lambda: Int(3))
        spec.input("fail_at", valid_type=Int, required=False)
        spec.input("exit_at", valid_type=Int, required=False, help="os._exit here if PLAIT_TEST_CRASH=1")
        spec.output("count", valid_type=Int)
        spec.exit_code(400, "ERROR_TOO_FAR", "stopped at {at}")
        spec.outline(cls.setup, while_(cls.more)(cls.inc, cls.check), cls.finalize)

    def setup(self):
        self.ctx.count = 0
        self.ctx.history = []

    def more(self):
        return self.ctx.count < self.inputs.n.value

    def inc(self):
        self.ctx.count += 1
        self.ctx.history.append(self.ctx.count)
        self.report("count is now %d", self.ctx.count)

    def check(self):
        if (
            os.environ.get("PLAIT_TEST_CRASH") == "1"
            and "exit_at" in self.inputs
            and self.ctx.count == self.inputs.exit_at.value
        ):
            os._exit(17)
        if "fail_at" in self.inputs and self.ctx.count == self.inputs.fail_at.value:
            return self.exit_codes.ERROR_TOO_FAR.format(at=self.ctx.count)
        return None

    def finalize(self):
        self.out("count", add(Int(self.ctx.count), Int(0)))


class Branches(WorkChain):
    """if_/elif_/else_ and return_."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("value", valid_type=Int)
        spec.output("kind", valid_type=Str)
        spec.exit_code(310, "ERROR_NEGATIVE", "the value is negative")
        spec.outline(
            if_(cls.is_negative)(return_(310)).elif_(cls.is_zero)(cls.zero).else_(cls.positive),
            cls.done,
        )

    def is_negative(self):
        return self.inputs.value.value < 0

    def is_zero(self):
        return self.inputs.value.value == 0

    def zero(self):
        self.ctx.kind = "zero"

    def positive(self):
        self.ctx.kind = "positive"

    def done(self):
        self.out("kind", make_str(Str(self.ctx.kind)))


@calcfunction
def make_str(value: Str) -> Str:
    return Str(value.value)


class Slow(WorkChain):
    """An async step that sleeps: used to observe concurrency of children."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("tag", valid_type=Str)
        spec.input("delay", valid_type=Float, default=lambda: Float(0.2))
        spec.output("tag", valid_type=Str)
        spec.outline(cls.work)

    async def work(self):
        record(f"start {self.inputs.tag.value}")
        await asyncio.sleep(self.inputs.delay.value)
        record(f"end {self.inputs.tag.value}")
        self.out("tag", make_str(self.inputs.tag))


class Gather(WorkChain):
    """Launches children in one step; they must run concurrently."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("count", valid_type=Int, default=lambda: Int(3))
        spec.output("tags", valid_type=List)
        spec.output_namespace("children", dynamic=True, valid_type=Str)
        spec.outline(cls.launch, cls.collect)

    def launch(self):
        for i in range(self.inputs.count.value):
            self.to_context(runs=append_(self.submit(Slow, tag=Str(f"c{i}"))))
        return ToContext(first=self.submit(Slow, tag=Str("first"), delay=Float(0.05)))

    def collect(self):
        tags = [run_node.outputs.tag.value for run_node in self.ctx.runs]
        self.ctx.tags = tags
        for i, run_node in enumerate(self.ctx.runs):
            self.out(f"children.c{i}", run_node.outputs.tag)
        self.out("tags", make_list(Str(",".join(tags))))


@calcfunction
def make_list(joined: Str) -> List:
    return List(joined.value.split(","))


class Nested(WorkChain):
    """A plain step that calls plait.run on a sub work chain and a workfunction."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("count", valid_type=Int)
        spec.output("product", valid_type=Int)
        spec.outline(cls.go)

    def go(self):
        outputs = run(Counter, n=Int(2))
        self.out("count", outputs["count"])
        self.out("product", add_multiply(Int(1), Int(2), Int(3)))


class AsyncNested(WorkChain):
    """An async step awaiting arun of a child work chain."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("count", valid_type=Int)
        spec.outline(cls.go)

    async def go(self):
        from plait import arun

        outputs = await arun(Counter, n=Int(2))
        self.out("count", outputs["count"])


class Raises(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.first, cls.boom)

    def first(self):
        self.ctx.x = 1

    def boom(self):
        raise RuntimeError("boom in step")


class BadContext(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.bad)

    def bad(self):
        self.ctx.lock = threading.Lock()


class MissingOutput(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("needed", valid_type=Int)
        spec.outline(cls.nothing)

    def nothing(self):
        pass


class Forever(WorkChain):
    """Waits on a child that sleeps long; used by kill tests."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch, cls.never)

    def launch(self):
        return ToContext(child=self.submit(Slow, tag=Str("long"), delay=Float(60.0)))

    def never(self):
        raise AssertionError("must not be reached")


class Crashy(WorkChain):
    """Exits the interpreter abruptly at ``crash_at`` when PLAIT_TEST_CRASH=1.

    ``crash_at``: ``"third:start"`` (between steps), ``"second:during"`` (after
    launching the children, before the checkpoint), or ``"child"`` (a child
    exits while the chain waits for it).
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("crash_at", valid_type=Str, default=lambda: Str("none"))
        spec.output("total", valid_type=Int)
        spec.output("children", valid_type=Dict)
        spec.outline(cls.first, cls.second, cls.third, cls.fourth)

    def _maybe_crash(self, where: str) -> None:
        if os.environ.get("PLAIT_TEST_CRASH") == "1" and self.inputs.crash_at.value == where:
            os._exit(17)

    def first(self):
        self.ctx.values = [add(Int(1), Int(2)).pk]
        self.ctx.total = 3

    def second(self):
        child_crash = {"exit_at": Int(1)} if self.inputs.crash_at.value == "child" else {}
        self.to_context(runs=append_(self.submit(Counter, n=Int(1))))
        self.to_context(runs=append_(self.submit(Counter, n=Int(2), **child_crash)))
        self._maybe_crash("second:during")

    def third(self):
        self._maybe_crash("third:start")
        total = self.ctx.total
        for run_node in self.ctx.runs:
            total += run_node.outputs.count.value
        self.ctx.total = total

    def fourth(self):
        self.out("total", add(Int(self.ctx.total), Int(0)))
        self.out("children", make_dict(Int(len(self.ctx.runs))))


@calcfunction
def make_dict(n: Int) -> Dict:
    return Dict({"children": n.value, "when": "done"})


class Bench(WorkChain):
    """Cheap work chain used by the debug-mode stress test."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("i", valid_type=Int)
        spec.output("result", valid_type=Int)
        spec.outline(cls.one, cls.two, cls.three)

    def one(self):
        self.ctx.x = self.inputs.i.value

    async def two(self):
        await asyncio.sleep(0)
        self.ctx.x += 1

    def three(self):
        self.out("result", add(Int(self.ctx.x), Int(1)))


def slow_python(seconds: float) -> None:
    """Burn CPU in user code (must never run on the event loop)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Gate(WorkChain):
    """Waits (asynchronously) until the file ``path`` exists."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.output("opened", valid_type=Str)
        spec.outline(cls.wait)

    async def wait(self):
        while not os.path.exists(self.inputs.path.value):
            await asyncio.sleep(0.05)
        self.out("opened", make_str(self.inputs.path))


class BehindGate(WorkChain):
    """A parent that waits for one Gate child."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.output("opened", valid_type=Str)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        return ToContext(gate=self.submit(Gate, path=self.inputs.path))

    def done(self):
        self.out("opened", self.ctx.gate.outputs.opened)


class Batch(WorkChain):
    """Three slow children, then a sum: used to kill a worker in the middle."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seed", valid_type=Int)
        spec.output("total", valid_type=Int)
        spec.outline(cls.launch, cls.collect, cls.finish)

    def launch(self):
        for i in range(3):
            tag = f"{self.inputs.seed.value}-{i}"
            self.to_context(slow=append_(self.submit(Slow, tag=Str(tag), delay=Float(0.4))))

    def collect(self):
        self.ctx.total = add(Int(len(self.ctx.slow)), self.inputs.seed).value

    def finish(self):
        self.out("total", add(Int(self.ctx.total), Int(0)))


# -- used by tests/engine/test_control_faults.py and tests/cli/test_kill_answers.py ----------------------


def _trace(path: str, line: str) -> None:
    """Append ``line`` to the file ``path``: what a step saw, readable from another interpreter."""
    with open(path, "a") as handle:
        handle.write(line + "\n")


class ThreadNap(WorkChain):
    """A plain (thread) step that blocks until the file ``gate`` exists, then launches a child.

    With ``launch=False`` it just returns after the gate (the engine then commits its
    checkpoint).  Every move is traced into the file ``trace``: ``started``, then
    ``launched <pk>`` or ``refused <ErrorType>`` (a refused launch is re-raised), or ``returned``.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("gate", valid_type=Str)
        spec.input("trace", valid_type=Str)
        spec.input("launch", valid_type=Bool, default=lambda: Bool(True))
        spec.outline(cls.nap, cls.after)

    def nap(self):
        trace = self.inputs.trace.value
        _trace(trace, "started")
        deadline = time.monotonic() + 120  # bounded: a test that forgets the gate still ends
        while not os.path.exists(self.inputs.gate.value) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.inputs.launch.value:
            _trace(trace, "returned")
            return None
        try:
            child = self.submit(Slow, tag=Str("late"), delay=Float(0.01))
        except BaseException as exc:
            _trace(trace, f"refused {type(exc).__name__}")
            raise
        _trace(trace, f"launched {child.pk}")
        return ToContext(child=child)

    def after(self):
        _trace(self.inputs.trace.value, "after")


class LoopLauncher(WorkChain):
    """A ``while_`` loop that submits one Slow child per turn and waits for it (``ToContext``)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("n", valid_type=Int, default=lambda: Int(10_000))
        spec.input("delay", valid_type=Float, default=lambda: Float(0.1))
        spec.input(
            "long_from", valid_type=Int, default=lambda: Int(10_000), help="turns from here sleep 300 s"
        )
        spec.outline(cls.setup, while_(cls.more)(cls.launch, cls.collect))

    def setup(self):
        self.ctx.turn = 0

    def more(self):
        return self.ctx.turn < self.inputs.n.value

    def launch(self):
        self.report("launching child %d", self.ctx.turn)
        delay = Float(300.0) if self.ctx.turn >= self.inputs.long_from.value else self.inputs.delay
        return ToContext(job=self.submit(Slow, tag=Str(f"turn-{self.ctx.turn}"), delay=delay))

    def collect(self):
        self.report("child %d ended %s", self.ctx.turn, self.ctx.job.process_state.value)
        self.ctx.turn += 1


# -- used by tests/daemon/test_chaos.py and benchmarks/bench_chaos.py --------------------------------------

#: every CHAOS_JOB_EVERY-th ChaosChain (``seed % CHAOS_JOB_EVERY == 0``) also runs a calculation job
CHAOS_JOB_EVERY = 10


def _chaos_fraction(seed: int) -> float:
    """A number in [0, 1] fixed by the seed: how long this chain naps, as a fraction of the maximum."""
    return (seed * 37 % 11) / 10


def _chaos_seconds(variable: str) -> float:
    """A maximum nap read from the environment (the daemon's workers inherit it); 0 when unset."""
    try:
        return max(0.0, float(os.environ.get(variable) or 0.0))
    except ValueError:
        return 0.0


@calcfunction
def chaos_first(seed: Int) -> Int:
    return Int(3 * seed.value + 1)


@calcfunction
def chaos_square(x: Int) -> Int:
    """Submitted by ChaosChain: a process function the daemon runs on its own, in a thread."""
    time.sleep(_chaos_fraction(x.value) * _chaos_seconds("PLAIT_CHAOS_SLEEP"))
    return Int(x.value * x.value % 1009)


@calcfunction
def chaos_combine(seed: Int, a: Int, b: Int, c: Int) -> Int:
    return Int(seed.value + 2 * a.value + 3 * b.value + 5 * c.value)


def chaos_has_job(seed: int) -> bool:
    return seed % CHAOS_JOB_EVERY == 0


def chaos_expected(seed: int) -> tuple[int, list[str]]:
    """What ``ChaosChain(seed=Int(seed))`` outputs as ``result``, and the labels of the processes it
    calls, in call order.  Timing never changes either: a crash-free twin must give the same."""
    a = 3 * seed + 1
    b = a * a % 1009
    job = chaos_has_job(seed)
    c = seed + a if job else 0
    labels = ["chaos_first", "chaos_square", *(["ArithmeticAddCalculation"] if job else []), "chaos_combine"]
    return seed + 2 * a + 3 * b + 5 * c, labels


class ChaosChain(WorkChain):
    """The chaos tests' work chain: a bit of everything the daemon must run exactly once.

    ``first`` calls a calcfunction inline; ``nap`` waits at an ``await`` (up to
    ``$PLAIT_CHAOS_NAP`` seconds, a fraction fixed by the seed); ``launch`` submits the calcfunction
    ``chaos_square`` (it sleeps up to ``$PLAIT_CHAOS_SLEEP`` s in its thread) and, for every
    :data:`CHAOS_JOB_EVERY`-th seed, an ``ArithmeticAddCalculation`` of ``code`` (gathered with
    ``to_context``); ``finish`` combines them with another inline calcfunction.  ``first`` and
    ``launch`` linger up to ``$PLAIT_CHAOS_STEP`` s after their calls, before their checkpoint, so
    that a worker killed at random is often in the middle of a step whose calls were already made.
    The result and the provenance depend on ``seed`` alone (see :func:`chaos_expected`), the naps
    only on the environment.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seed", valid_type=Int)
        spec.input("code", valid_type=Code, help="the code of the calculation job (bash on localhost)")
        spec.output("result", valid_type=Int)
        spec.exit_code(410, "ERROR_CHILD_FAILED", "the child {child} did not finish ok: {why}")
        spec.outline(cls.first, cls.nap, cls.launch, cls.finish)

    def first(self):
        self.ctx.first = chaos_first(self.inputs.seed)
        self._linger()

    def _linger(self):
        """Stay in the step (in its thread) after its calls, before its checkpoint: a kill lands here."""
        time.sleep(_chaos_fraction(self.inputs.seed.value + 1) * _chaos_seconds("PLAIT_CHAOS_STEP"))

    async def nap(self):
        await asyncio.sleep(_chaos_fraction(self.inputs.seed.value) * _chaos_seconds("PLAIT_CHAOS_NAP"))

    def launch(self):
        self.to_context(square=self.submit(chaos_square, x=self.ctx.first))
        if chaos_has_job(self.inputs.seed.value):
            from plait.calculations.arithmetic import ArithmeticAddCalculation

            job = self.submit(
                ArithmeticAddCalculation, code=self.inputs.code, x=self.inputs.seed, y=self.ctx.first
            )
            self.to_context(job=job)
        self._linger()

    def finish(self):
        for key in ("square", "job"):
            child = self.ctx.get(key)
            if child is not None and not child.is_finished_ok:
                why = f"{child.process_state.value}, exit status {child.exit_status}: {child.exit_message}"
                return self.exit_codes.ERROR_CHILD_FAILED.format(child=f"{key} <{child.pk}>", why=why)
        job = self.ctx.get("job")
        c = job.outputs.sum if job is not None else Int(0)
        self.out("result", chaos_combine(self.inputs.seed, self.ctx.first, self.ctx.square.outputs.result, c))
        return None


def _wait_for_file(path: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds  # bounded: a test that forgets the file still ends
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


class SlowToLoad(Slow):
    """A Slow child that a daemon worker, once it has claimed it, rebuilds only when the file
    ``load_gate`` exists: it widens the window in which a worker holds the lease of a process
    it has not started yet."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("load_gate", valid_type=Str)

    @classmethod
    def _load(cls, node, runner, **kwargs):
        process = super()._load(node, runner, **kwargs)
        _wait_for_file(process.inputs.load_gate.value)
        return process


class LaunchSlowToLoad(WorkChain):
    """Submits one SlowToLoad child; with ``hold_gate`` its step then blocks until that file exists."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("load_gate", valid_type=Str)
        spec.input("hold_gate", valid_type=Str, required=False)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        child = self.submit(
            SlowToLoad, tag=Str("slow-to-load"), delay=Float(0.1), load_gate=self.inputs.load_gate
        )
        self.report("launched %d", child.pk)
        if "hold_gate" in self.inputs:
            _wait_for_file(self.inputs.hold_gate.value)
        return ToContext(job=child)

    def done(self):
        self.report("done: the child ended %s", self.ctx.job.process_state.value)


# -- used by tests/engine/test_control_faults.py ----------------------------------------------------------


class SleepJobParent(WorkChain):
    """Submits one ``ShellJob`` (``sleep 300``) on the computer ``computer`` and waits for it."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("computer", valid_type=Str)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        from plait.calculations.shell import ShellJob

        inputs = {
            "command": Str("sleep"),
            "arguments": List(["300"]),
            "metadata": {"computer": self.inputs.computer.value},
        }
        return ToContext(job=self.submit(ShellJob, **inputs))

    def done(self):
        self.report("the job ended %s", self.ctx.job.process_state.value)
