"""Named selections (per user), undo/redo, invert, the IDs download and the URL form."""

from __future__ import annotations

import numpy as np
import pytest

from chemlatent.errors import ChemlatentError
from chemlatent.explore.state import ExplorerState, steps
from chemlatent.explore.state.steps import decode_ids, encode_ids
from chemlatent.explore.survey import SurveyData
from chemlatent.io.annotations import open_annotations


@pytest.fixture(scope="module")
def data(encoded_tiny, tmp_path_factory):
    return SurveyData(encoded_tiny, db=str(tmp_path_factory.mktemp("steps") / "a.sqlite"), load_model=False)


def test_store_selections_are_per_user_with_history(tmp_path):
    with open_annotations(tmp_path / "a.sqlite", who="ana") as store:
        store.save_selection("halo", [5, 3, 3, 9])
        store.save_selection("halo", [1, 2], who="bo")
        assert store.get_selection("halo").star_ids.tolist() == [3, 5, 9]
        assert store.get_selection("halo", who="bo").star_ids.tolist() == [1, 2]
        store.rename_selection("halo", "inner halo")
        assert list(store.selections()["name"]) == ["inner halo"]
        with pytest.raises(ChemlatentError):
            store.get_selection("halo")
        store.save_selection("x", [1])
        with pytest.raises(ChemlatentError, match="exists"):
            store.rename_selection("x", "inner halo")
        store.delete_selection("x")
        assert list(store.selections()["name"]) == ["inner halo"]
        assert list(store.selections(who="bo")["name"]) == ["halo"]
        with pytest.raises(ChemlatentError):
            store.delete_selection("x")


def test_encode_ids_round_trip():
    ids = np.array([10**12, 7, 7, 123456789, 3])
    text = encode_ids(ids)
    assert text.startswith("ids:") and "/" not in text and "+" not in text
    assert decode_ids(text).tolist() == sorted(set(ids.tolist()))
    with pytest.raises(ChemlatentError):
        decode_ids("ids:!!notbase64")


def test_undo_redo_invert(data):
    st = ExplorerState(data, user="ana")
    ids = data.frame["star_id"].to_numpy()
    assert not st.can_undo
    st.select_ids(ids[:10])
    st.select_ids(ids[10:30], "add")
    assert st.n_selected == 30 and st.can_undo
    assert st.undo_selection() and st.n_selected == 10 and st.can_redo
    assert st.undo_selection() and st.n_selected == 0
    assert not st.undo_selection()
    assert st.redo_selection() and st.n_selected == 10
    st.invert_selection()
    assert st.n_selected == data.n - 10 and not st.can_redo  # a new step drops the redo
    assert st.undo_selection() and st.n_selected == 10


def test_named_selections_ids_and_url(data, monkeypatch):
    st = ExplorerState(data, user="ana")
    ids = data.frame["star_id"].to_numpy()
    st.select_ids(ids[:25])
    assert st.selection_ref.startswith("ids:")
    assert decode_ids(st.selection_ref).tolist() == sorted(ids[:25].tolist())
    st.save_selection("first 25")
    assert "first 25" in st.selection_names()
    name, text = st.selection_ids_text()
    assert name.endswith("_selection.txt") and text.decode().splitlines()[1:] == [str(i) for i in ids[:25]]
    st.clear_selection()
    assert st.selection_ref == ""
    assert st.load_selection("first 25") == 25
    other = ExplorerState(data, user="bo")
    assert "first 25" not in other.selection_names()
    other.apply_url_state({"selection_ref": st.selection_ref})  # a shared link
    assert other.n_selected == 25
    st.rename_selection("first 25", "f25")
    st.delete_selection("f25")
    assert st.selection_names() == []
    # a large selection goes into the URL by the name of a saved selection with exactly its stars
    monkeypatch.setattr(steps, "URL_MAX_STARS", 100)
    st.select_ids(ids[:101])
    assert st.selection_ref == ""
    st.save_selection("big")
    assert st.selection_ref == "name:ana/big"
    other.apply_url_state({"selection_ref": "name:ana/big"})
    assert other.n_selected == 101
    other.apply_url_state({"selection_ref": "ids:damaged!"})
    assert "ignored" in other.message
