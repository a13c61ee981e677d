"""A real Jupyter kernel (ipykernel, whose event loop is running) drives plait through nbclient."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TESTS = Path(__file__).resolve().parents[1]

CELLS = [
    # setup: the profile of the test, the test workflows importable
    f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    "import asyncio, plait\n"
    "from plait.orm import Int\n"
    "from wf_library import Counter, add, add_multiply\n"
    "loop = asyncio.get_running_loop()\n"
    "print('loop running:', loop.is_running())",
    # 1. the blocking API inside the kernel's running loop
    "outputs, node = plait.run_get_node(Counter, n=Int(3))\n"
    "assert asyncio.get_running_loop() is loop\n"
    "print('run', outputs['count'].value, node.process_state.value)",
    # 2. the async API awaited at top level
    "outputs, node = await plait.arun_get_node(Counter, n=Int(2))\nprint('arun', "
    "outputs['count'].value, node.pk)",
    # 3. a nested workfunction calling calcfunctions
    "result = add_multiply(Int(2), Int(3), Int(4))\n"
    "wf = result.get_incoming()[-1][2]\n"
    "print('nested', result.value, [c.process_label for c in wf.called])",
]


def test_notebook_cells_run_plait_in_a_live_kernel(plait_home):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    assert os.environ["PLAIT_HOME"] == str(plait_home)  # the kernel inherits the test's profile
    client = NotebookClient(notebook, timeout=120, kernel_name="python3")
    client.execute()

    def text(index: int, stream: str = "stdout") -> str:
        outputs = notebook.cells[index].outputs
        errors = [o for o in outputs if o.output_type == "error"]
        assert not errors, "\n".join("\n".join(e.traceback) for e in errors)
        return "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == stream)

    assert "loop running: True" in text(0)
    assert "run 3 finished" in text(1)
    assert text(2).startswith("arun 2 ")
    assert "nested 20 ['add', 'multiply']" in text(3)
    # the work chain's report lines show in the cell as they happen, on its stderr
    assert "|Counter|inc]: count is now 3" in text(1, "stderr") and "count is now 2" in text(2, "stderr")

    from plait.storage import get_backend

    labels = [row["process_label"] for row in get_backend().list_processes()]
    assert labels.count("Counter") == 2 and labels.count("add_multiply") == 1
