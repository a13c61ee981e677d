"""Nodes of the provenance graph: data types, process nodes, computers and codes.

Importing this package does not open the database (nor import SQLAlchemy):
storage is reached on the first store or load.
"""

from plait.orm.code import Code, InstalledCode, PortableCode, load_code
from plait.orm.comments import Comment
from plait.orm.computer import Computer
from plait.orm.data import (
    ArrayData,
    BaseType,
    Bool,
    Dict,
    Float,
    FolderData,
    Int,
    List,
    NumericType,
    RemoteData,
    SinglefileData,
    Str,
    to_node,
)
from plait.orm.deletion import DeletionRefusedError, delete_nodes
from plait.orm.errors import (
    InvalidQueryError,
    ModificationNotAllowed,
    MultipleObjectsError,
    NotExistentError,
    StoringNotAllowed,
)
from plait.orm.groups import Group, load_group
from plait.orm.node import Data, LinkType, Node, load_node
from plait.orm.process_nodes import (
    CalcFunctionNode,
    CalcJobNode,
    CalculationNode,
    ProcessNode,
    ProcessState,
    WorkChainNode,
    WorkflowNode,
    WorkFunctionNode,
)
from plait.orm.querybuilder import QueryBuilder

__all__ = [
    "ArrayData",
    "BaseType",
    "Bool",
    "CalcFunctionNode",
    "CalcJobNode",
    "CalculationNode",
    "Code",
    "Comment",
    "Computer",
    "Data",
    "DeletionRefusedError",
    "Dict",
    "Float",
    "FolderData",
    "Group",
    "InstalledCode",
    "Int",
    "InvalidQueryError",
    "LinkType",
    "List",
    "ModificationNotAllowed",
    "MultipleObjectsError",
    "Node",
    "NotExistentError",
    "NumericType",
    "PortableCode",
    "ProcessNode",
    "ProcessState",
    "QueryBuilder",
    "RemoteData",
    "SinglefileData",
    "StoringNotAllowed",
    "Str",
    "WorkChainNode",
    "WorkFunctionNode",
    "WorkflowNode",
    "delete_nodes",
    "load_code",
    "load_group",
    "load_node",
    "to_node",
]
