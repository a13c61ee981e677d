"""``ArrayData``: named numpy arrays, each kept as a ``.npy`` file in the node's repository.

The API is aiida-core's: ``set_array(name, array)``, ``get_array(name)``,
``get_arraynames()``, ``get_shape(name)``, ``get_iterarrays()``,
``delete_array(name)``, the ``arrays`` property, and ``ArrayData(array)`` or
``ArrayData({"x": ..., "y": ...})`` to set them at creation (a lone array is
named ``default``).  Each array is the file ``<name>.npy`` written by
``numpy.save``; its shape is the attribute ``array|<name>`` (a list of ints),
so queries can filter on shapes without reading files.

Arrays are written and read with ``allow_pickle=False``: an array of Python
objects (``dtype=object``) would be a pickle, and loading a pickle from a
shared database runs anyone's code, so it is refused when it is set.  Names
are letters, digits and underscores (they become file names).

numpy is imported by the methods that need it, never when this module is
imported, so ``import plait`` stays quick for scripts that store no arrays.

Differences from aiida-core, on purpose: once the node is stored the arrays
``get_array`` returns are read-only (a stored node never changes, and the
array is kept in memory for the next call; ``.copy()`` it to change it), and
an object array is refused when it is set rather than when it is written.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from plait.orm.errors import StoringNotAllowed
from plait.orm.node import Data

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ArrayData"]

_NAME = re.compile(r"[0-9A-Za-z_]+")


class ArrayData(Data):
    """A set of named numpy arrays (see the module docstring)."""

    node_type = "data.core.array"
    #: the prefix of the attributes that hold the arrays' shapes
    array_prefix = "array|"
    #: the name of an array given alone to the constructor
    default_array_name = "default"

    def __init__(self, arrays: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cached_arrays: dict[str, np.ndarray] = {}
        if arrays is None:
            return
        import numpy as np

        if not isinstance(arrays, Mapping):
            arrays = {self.default_array_name: arrays}
        for name, value in arrays.items():
            self.set_array(name, np.asarray(value))

    def _init_loaded(self, row: Mapping[str, Any]) -> None:
        self._cached_arrays = {}

    # -- writing (before the node is stored) ------------------------------------------------
    @classmethod
    def _check_name(cls, name: object) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"array name {name!r} is not valid: use letters, digits and underscores only "
                "(it becomes the file name <name>.npy)"
            )
        return name

    def set_array(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` under ``name`` (replacing an array of that name), before the node is stored.

        Raises:
            ModificationNotAllowed: the node is stored.
            ValueError: ``name`` is not letters, digits and underscores.
            TypeError: ``array`` is not a numpy array (``numpy.asarray`` it first).
            StoringNotAllowed: the array holds Python objects (its dtype needs a pickle).
        """
        self._check_mutable(f"array '{name}'")
        self._check_name(name)
        import numpy as np

        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"ArrayData stores numpy arrays: array '{name}' is a {type(array).__name__} "
                "(convert it with numpy.asarray first)"
            )
        if array.dtype.hasobject:
            raise StoringNotAllowed(
                f"array '{name}' has dtype {array.dtype}, which holds Python objects: numpy can only "
                "save it as a pickle, which plait never loads; give it a numeric, bool or string dtype"
            )
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        self.put_object_from_bytes(f"{name}.npy", buffer.getvalue())
        self.set_attribute(f"{self.array_prefix}{name}", [int(n) for n in array.shape])

    def delete_array(self, name: str) -> None:
        """Remove the array ``name`` before the node is stored.

        Raises:
            ModificationNotAllowed: the node is stored.
            KeyError: there is no array of that name.
        """
        self._check_mutable(f"array '{name}'")
        self._require(name)
        self._pending.pop(f"{name}.npy", None)
        self._attributes.pop(f"{self.array_prefix}{name}", None)

    # -- reading ------------------------------------------------------------------------------
    def get_arraynames(self) -> list[str]:
        """The names of the arrays, sorted (the same on every database)."""
        prefix = self.array_prefix
        return sorted(key[len(prefix) :] for key in self._attributes if key.startswith(prefix))

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (each read from the repository on first use)."""
        return {name: self.get_array(name) for name in self.get_arraynames()}

    def _require(self, name: str) -> None:
        if f"{self.array_prefix}{name}" not in self._attributes:
            names = ", ".join(self.get_arraynames()) or "none"
            raise KeyError(f"{self!r} has no array '{name}' (arrays: {names})")

    def get_shape(self, name: str) -> tuple[int, ...]:
        """The shape of array ``name``, read from the node's attributes (the file is not opened).

        Raises:
            KeyError: there is no array of that name.
        """
        self._require(name)
        return tuple(self._attributes[f"{self.array_prefix}{name}"])

    def get_array(self, name: str | None = None) -> np.ndarray:
        """The array ``name``; with no name, the node's only array.

        A stored node's arrays are read once, kept in memory and returned read-only; before the
        node is stored each call reads a fresh copy.

        Raises:
            KeyError: there is no array of that name.
            ValueError: no name was given and the node holds no array or several.
        """
        if name is None:
            names = self.get_arraynames()
            if len(names) != 1:
                what = "no arrays" if not names else f"{len(names)} arrays ({', '.join(names)})"
                raise ValueError(f"get_array() needs a name: {self!r} holds {what}")
            name = names[0]
        self._require(name)
        cached = self._cached_arrays.get(name)
        if cached is not None:
            return cached
        import numpy as np

        array = np.load(io.BytesIO(self._read_file(f"{name}.npy")), allow_pickle=False)
        if self.is_stored:
            array.setflags(write=False)
            self._cached_arrays[name] = array
        return array

    def get_iterarrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, array)`` for each array."""
        for name in self.get_arraynames():
            yield name, self.get_array(name)

    def clear_internal_cache(self) -> None:
        """Forget the arrays kept in memory (they are read again on the next ``get_array``)."""
        self._cached_arrays = {}

    def _validate_before_store(self) -> None:
        files = {path[: -len(".npy")] for path in self.list_file_paths() if path.endswith(".npy")}
        if files != set(self.get_arraynames()):
            raise StoringNotAllowed(
                f"ArrayData files {sorted(files)} and array attributes {self.get_arraynames()} disagree"
            )
