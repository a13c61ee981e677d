"""Built-in data types."""

from plait.orm.data.array import ArrayData
from plait.orm.data.base import BaseType, Bool, Float, Int, NumericType, Str, to_node
from plait.orm.data.collections import Dict, List
from plait.orm.data.files import FolderData, SinglefileData
from plait.orm.data.remote import RemoteData

__all__ = [
    "ArrayData",
    "BaseType",
    "Bool",
    "Dict",
    "Float",
    "FolderData",
    "Int",
    "List",
    "NumericType",
    "RemoteData",
    "SinglefileData",
    "Str",
    "to_node",
]
