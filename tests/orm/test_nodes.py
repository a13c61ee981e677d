"""Data nodes: values, storing, loading, immutability, extras, files — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from plait.orm import (
    Bool,
    Dict,
    Float,
    FolderData,
    Int,
    List,
    ModificationNotAllowed,
    NotExistentError,
    SinglefileData,
    StoringNotAllowed,
    Str,
    load_node,
    to_node,
)


def test_base_types_round_trip(any_profile):
    nodes = [Int(3), Float(2.5), Str('héllo "quoted"'), Bool(True)]
    for node in nodes:
        node.store()
        loaded = load_node(node.pk)
        assert type(loaded) is type(node)
        assert loaded.value == node.value
        assert loaded.uuid == node.uuid and loaded.node_hash == node.node_hash
        assert loaded.ctime is not None and loaded.ctime.tzinfo is not None


def test_arithmetic_and_comparisons():
    assert (Int(2) + Int(3)).value == 5 and isinstance(Int(2) + 3, Int)
    assert isinstance(Int(1) + 0.5, Float) and (Int(1) + 0.5).value == 1.5
    assert (3 * Int(2)).value == 6 and (Int(7) // 2).value == 3 and (-Int(2)).value == -2
    assert Int(2) < Int(3) and Int(3) == 3 and Float(1.0) == Int(1)
    with pytest.raises(TypeError, match="Int needs a int"):
        Int("3")
    with pytest.raises(TypeError):
        Int(2.5)
    with pytest.raises(TypeError):
        Bool(1)


def test_stored_nodes_are_immutable_but_extras_label_are_not(any_profile):
    node = Int(1).store()
    with pytest.raises(ModificationNotAllowed, match=r"Int pk=\d+ is stored"):
        node.value = 2
    with pytest.raises(ModificationNotAllowed):
        node.set_attribute("x", 1)
    d = Dict({"a": 1}).store()
    with pytest.raises(ModificationNotAllowed):
        d["b"] = 2
    node.set_extra("tag", {"k": [1, 2]})
    node.label = "one"
    loaded = load_node(node.pk)
    assert loaded.get_extra("tag") == {"k": [1, 2]} and loaded.label == "one" and loaded.value == 1


def test_dict_and_list(any_profile):
    d = Dict({"x": 1, "nested": {"y": [1, 2]}}).store()
    loaded = load_node(d.uuid)
    assert loaded.get_dict() == {"x": 1, "nested": {"y": [1, 2]}}
    assert loaded["nested"]["y"] == [1, 2] and "x" in loaded and len(loaded) == 2
    copy = loaded.get_dict()
    copy["x"] = 5
    assert loaded["x"] == 1  # reading never exposes the stored content for change
    items = List([1, "a", None])
    items.append(2.5)
    items.store()
    assert load_node(items.pk).get_list() == [1, "a", None, 2.5]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Dict({"x": float("nan")}), "NaN"),
        (lambda: Dict({"x": object()}), "is not JSON"),
        (lambda: Dict({"x": {1: 2}}), "is not a string"),
        (lambda: List([{1, 2}]), "set is not JSON"),
    ],
)
def test_non_json_values_are_refused_with_the_key(make, message):
    with pytest.raises(StoringNotAllowed, match=message):
        make()


def test_files_single_and_folder(tmp_path, any_profile):
    source = tmp_path / "in put.txt"
    source.write_text("line\n")
    single = SinglefileData(source).store()
    loaded = load_node(single.pk)
    assert loaded.filename == "in put.txt" and loaded.get_content() == "line\n"
    with loaded.open() as handle:
        assert handle.read() == "line\n"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(bytes(range(256)))
    (tree / "sub" / "b.txt").write_text("b")
    folder = FolderData(tree=tree).store()
    again = load_node(folder.pk)
    assert again.list_object_names() == ["a.bin", "sub"]
    assert again.list_object_names("sub") == ["b.txt"]
    assert again.get_object_content("a.bin", "rb") == bytes(range(256))
    out = tmp_path / "out"
    again.copy_tree_to(out)
    assert (out / "sub" / "b.txt").read_text() == "b"
    with pytest.raises(ModificationNotAllowed):
        again.put_object_from_bytes("c", b"")
    with pytest.raises(FileNotFoundError, match="has no file 'nope'"):
        again.get_object_content("nope")
    with pytest.raises(ValueError, match="not a relative file path"):
        FolderData().put_object_from_bytes("../escape", b"")
    # same content, one object in the repository
    from plait.storage import get_backend

    SinglefileData(b"line\n", filename="other.txt").store()
    assert get_backend().repository.has(single._files["in put.txt"][0])


def test_load_node_by_pk_uuid_prefix_and_errors(any_profile):
    node = Int(5).store()
    assert load_node(str(node.pk)).pk == node.pk
    assert load_node(node.uuid[:9]).pk == node.pk  # with the dash: a prefix of digits alone is a pk
    with pytest.raises(NotExistentError, match="no node with pk 999999"):
        load_node(999999)
    with pytest.raises(NotExistentError, match="no node with uuid"):
        load_node("ffffffff-0000")


def test_to_node_wraps_plain_values():
    assert isinstance(to_node(True), Bool) and isinstance(to_node(1), Int)
    assert isinstance(to_node({"a": 1}), Dict) and isinstance(to_node((1, 2)), List)
    with pytest.raises(TypeError, match="no node type holds a object"):
        to_node(object())


def test_hash_depends_on_content_only():
    assert Int(1).store().node_hash == Int(1).store().node_hash
    assert Int(1).store().node_hash != Int(2).store().node_hash
    assert Int(1).store().node_hash != Float(1.0).store().node_hash


def test_a_uuid_prefix_of_digits_is_found_when_no_node_has_that_pk(any_profile):
    """A uuid may begin with eight digits (about 2 % do): such a prefix is a pk first, then a uuid prefix."""
    import uuid as uuids

    from plait.storage import get_backend
    from plait.storage.backend import utcnow

    first = Int(1).store()
    row = {
        "uuid": str(uuids.UUID("78113212-0000-4000-8000-000000000000")),
        "node_type": "data.core.int",
        "process_type": None,
        "label": "digits",
        "description": "",
        "ctime": utcnow(),
        "mtime": utcnow(),
        "attributes": {"value": 7},
        "extras": {},
        "files": {},
        "node_hash": None,
        "computer_id": None,
    }
    (pk,) = get_backend().insert_nodes([row])
    assert load_node("78113212").pk == pk  # no node 78113212: the uuid prefix
    assert load_node(" 7811 ").pk == pk
    assert load_node(str(first.pk)).pk == first.pk  # a pk that exists wins
    with pytest.raises(NotExistentError, match="no node with pk 999"):
        load_node("999")  # under 4 digits: a pk only
    with pytest.raises(NotExistentError):
        load_node(78113212)  # an int is a pk only
