"""ArrayData: numpy arrays as .npy files in the repository, aiida-core's API — on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from plait.orm import ArrayData, ModificationNotAllowed, QueryBuilder, StoringNotAllowed, load_node


def test_arrays_round_trip_through_the_repository(any_profile):
    energies = np.linspace(0.0, 1.0, 11)
    positions = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    labels = np.array(["Si", "O", "O"])
    node = ArrayData({"energies": energies, "positions": positions}, label="bands")
    node.set_array("labels", labels)
    assert node.get_arraynames() == ["energies", "labels", "positions"]
    assert node.get_shape("positions") == (2, 3, 4)
    node.store()

    loaded = load_node(node.pk)
    assert type(loaded) is ArrayData and loaded.node_type == "data.core.array"
    assert loaded.get_arraynames() == ["energies", "labels", "positions"]
    assert loaded.get_shape("energies") == (11,) and loaded.get_shape("labels") == (3,)
    assert loaded.attributes == {"array|energies": [11], "array|positions": [2, 3, 4], "array|labels": [3]}
    for name, original in (("energies", energies), ("positions", positions), ("labels", labels)):
        again = loaded.get_array(name)
        assert again.dtype == original.dtype and np.array_equal(again, original)
    assert sorted(loaded.list_file_paths()) == ["energies.npy", "labels.npy", "positions.npy"]
    # each file is a plain .npy file that numpy reads without pickles
    raw = np.load(io.BytesIO(loaded.get_object_content("positions.npy", "rb")), allow_pickle=False)
    assert np.array_equal(raw, positions)
    assert {name: a.shape for name, a in loaded.get_iterarrays()} == {
        "energies": (11,),
        "labels": (3,),
        "positions": (2, 3, 4),
    }
    assert set(loaded.arrays) == {"energies", "labels", "positions"}


def test_shapes_are_queryable_attributes(any_profile):
    ArrayData(np.zeros((3, 4))).store()
    small = ArrayData(np.zeros(2)).store()
    found = QueryBuilder().append(
        ArrayData, filters={"attributes.array|default": {"of_length": 1}}, project="id"
    )
    assert found.all(flat=True) == [small.pk]


def test_a_lone_array_is_named_default(any_profile):
    node = ArrayData([[1, 2], [3, 4]]).store()
    assert node.get_arraynames() == ["default"]
    assert np.array_equal(load_node(node.pk).get_array(), np.array([[1, 2], [3, 4]]))


def test_stored_arrays_are_immutable(any_profile):
    node = ArrayData({"x": np.ones(3)}).store()
    with pytest.raises(ModificationNotAllowed, match="array 'y'"):
        node.set_array("y", np.zeros(2))
    with pytest.raises(ModificationNotAllowed):
        node.delete_array("x")
    loaded = load_node(node.pk)
    array = loaded.get_array("x")
    with pytest.raises(ValueError, match="read-only"):
        array[0] = 5.0
    assert loaded.get_array("x") is array  # kept in memory once read
    loaded.clear_internal_cache()
    assert loaded.get_array("x") is not array and np.array_equal(loaded.get_array("x"), np.ones(3))
    changed = loaded.get_array("x").copy()
    changed[0] = 5.0
    assert load_node(node.pk).get_array("x")[0] == 1.0


def test_before_storing_arrays_can_be_replaced_and_deleted():
    node = ArrayData()
    node.set_array("x", np.ones(3))
    first = node.get_array("x")
    first[0] = 7.0  # an unstored node hands out fresh copies
    assert node.get_array("x")[0] == 1.0
    node.set_array("x", np.zeros((2, 2)))
    assert node.get_shape("x") == (2, 2)
    node.set_array("y", np.ones(1))
    node.delete_array("y")
    assert node.get_arraynames() == ["x"] and node.list_file_paths() == ["x.npy"]
    node.store()
    assert load_node(node.pk).get_shape("x") == (2, 2)


def test_bad_arrays_and_names_are_refused_with_the_reason():
    node = ArrayData()
    with pytest.raises(StoringNotAllowed, match=r"array 'things' has dtype object.*pickle"):
        node.set_array("things", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(StoringNotAllowed, match="dtype"):
        node.set_array("records", np.zeros(2, dtype=[("a", "i4"), ("b", "O")]))
    with pytest.raises(TypeError, match=r"array 'x' is a list \(convert it with numpy.asarray"):
        node.set_array("x", [1, 2, 3])  # type: ignore[arg-type]
    for bad in ("", "a-b", "../x", "x.npy", "a b", 3):
        with pytest.raises(ValueError, match="is not valid: use letters, digits and underscores"):
            node.set_array(bad, np.ones(1))  # type: ignore[arg-type]
    assert node.get_arraynames() == [] and node.list_file_paths() == []
    with pytest.raises(KeyError, match=r"has no array 'nope' \(arrays: none\)"):
        node.get_array("nope")
    with pytest.raises(ValueError, match=r"needs a name: .* holds no arrays"):
        node.get_array()
    node.set_array("a", np.ones(1))
    node.set_array("b", np.ones(1))
    with pytest.raises(ValueError, match=r"holds 2 arrays \(a, b\)"):
        node.get_array()
    with pytest.raises(KeyError, match=r"arrays: a, b"):
        node.get_shape("c")


def test_a_pickled_file_is_never_loaded(any_profile):
    """A .npy holding a pickle (written by other means) fails to load instead of running code."""
    node = ArrayData()
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    node.put_object_from_bytes("evil.npy", buffer.getvalue())
    node.set_attribute("array|evil", [1])
    node.store()
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_node(node.pk).get_array("evil")


def test_import_plait_does_not_import_numpy():
    code = (
        "import sys, plait, plait.orm; from plait.orm import ArrayData; ArrayData();"
        "assert 'numpy' not in sys.modules, 'numpy was imported'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
