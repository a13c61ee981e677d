"""Comments on nodes: add, list, update, remove, who and when — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from plait.orm import (
    Comment,
    Int,
    ModificationNotAllowed,
    NotExistentError,
    StoringNotAllowed,
    load_node,
)
from plait.storage import create_profile, get_backend, get_profile, load_profile
from plait.storage.schema import nodes as nodes_table


def test_add_and_list_comments_oldest_first(any_profile):
    node = Int(1).store()
    first = node.add_comment("converged, but the k-mesh is coarse")
    second = node.add_comment("rerun with 8x8x8\nsee batch 9")
    assert first.pk is not None and second.pk is not None and first.pk < second.pk
    assert first.user_email == get_profile().user_email == "user@localhost"
    assert first.ctime is not None and first.ctime == first.mtime and first.ctime.tzinfo is not None
    loaded = load_node(node.pk).get_comments()
    assert loaded == [first, second]
    assert [c.content for c in loaded] == [
        "converged, but the k-mesh is coarse",
        "rerun with 8x8x8\nsee batch 9",
    ]
    assert loaded[0].node_pk == node.pk and loaded[0].node == node
    assert node.get_comment(second.pk).content.endswith("batch 9")


def test_update_changes_content_and_mtime_only(any_profile):
    node = Int(1).store()
    comment = node.add_comment("first thought")
    node.update_comment(comment.pk, "second thought")
    again = Comment.get(comment.pk)
    assert again.content == "second thought"
    assert again.ctime == comment.ctime and again.mtime > again.ctime
    assert again.user_email == comment.user_email and again.uuid == comment.uuid


def test_remove(any_profile):
    node = Int(1).store()
    keep, drop = node.add_comment("keep"), node.add_comment("drop")
    node.remove_comment(drop.pk)
    assert node.get_comments() == [keep]
    with pytest.raises(NotExistentError, match=f"no comment with pk {drop.pk} in profile"):
        Comment.get(drop.pk)
    with pytest.raises(NotExistentError, match=f"no comment with pk {drop.pk}"):
        node.remove_comment(drop.pk)
    with pytest.raises(ModificationNotAllowed, match="not stored"):
        Comment(node, "never stored").delete()


def test_a_stale_comment_never_changes_the_one_that_took_its_pk(any_profile):
    node = Int(1).store()
    stale = node.add_comment("first")
    Comment.get(stale.pk).delete()  # as another process would
    newer = node.add_comment("second")  # on SQLite it gets the deleted comment's pk
    with pytest.raises(NotExistentError, match="no longer exists"):
        stale.set_content("overwritten?")
    with pytest.raises(NotExistentError, match="no longer exists"):
        stale.delete()
    assert [c.content for c in node.get_comments()] == ["second"] and newer.is_stored


def test_a_comment_of_another_node_is_not_found_through_this_one(any_profile):
    mine, other = Int(1).store(), Int(2).store()
    theirs = other.add_comment("on the other node")
    with pytest.raises(NotExistentError, match=rf"has no comment {theirs.pk} \(it is on node {other.pk}\)"):
        mine.update_comment(theirs.pk, "hijacked")
    with pytest.raises(NotExistentError):
        mine.remove_comment(theirs.pk)
    assert Comment.get(theirs.pk).content == "on the other node"


def test_bad_comments_are_refused_before_storing(any_profile):
    with pytest.raises(StoringNotAllowed, match="it is not stored"):
        Int(1).add_comment("on an unstored node")
    node = Int(1).store()
    with pytest.raises(ValueError, match="needs some text"):
        node.add_comment("   ")
    with pytest.raises(TypeError, match="not a int"):
        node.add_comment(5)  # type: ignore[arg-type]
    comment = node.add_comment("fine")
    with pytest.raises(ValueError, match="needs some text"):
        comment.set_content("")
    assert node.get_comments() == [comment] and Comment.get(comment.pk).content == "fine"
    with pytest.raises(TypeError, match="attached to a node"):
        Comment("not a node", "text")  # type: ignore[arg-type]


def test_an_unstored_node_has_no_comments():
    assert Int(1).get_comments() == []


def test_the_author_is_the_profile_user_or_who_is_named(tmp_path):
    create_profile("ada", user_email="ada@lab.example")
    load_profile("ada")
    node = Int(1).store()
    assert node.add_comment("mine").user_email == "ada@lab.example"
    assert node.add_comment("relayed", user_email="bob@lab.example").user_email == "bob@lab.example"
    assert [c.user_email for c in node.get_comments()] == ["ada@lab.example", "bob@lab.example"]


def test_comments_go_with_their_node(any_profile):
    node = Int(1).store()
    comment = node.add_comment("doomed")
    with get_backend().transaction() as conn:
        conn.execute(delete(nodes_table).where(nodes_table.c.id == node.pk))
    with pytest.raises(NotExistentError):
        Comment.get(comment.pk)
