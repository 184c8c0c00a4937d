"""SAMP the other way (GUI-free): TOPCAT (or Aladin) selects or highlights rows of a table
that holds this survey's stars, and we hear which stars.

:class:`SampReceiver` registers with the hub as a callable client and listens for
``table.select.rowList`` (a row selection) and ``table.highlight.row`` (one row, as when
the user clicks it). A message names its table by ``url`` (and ``table-id``); the table is
"this survey's" when it is a VOTable or FITS table on this machine (a ``file://`` URL) with
a ``star_id`` column whose provenance names this survey (``survey_path`` / ``SURVEY``, as
every table chemlatent writes has: downloads, ``chemlatent flag``, the page's SAMP sends).
Tables from elsewhere are ignored and said so. The row numbers are mapped to star_ids and
handed to ``on_select(star_ids)`` or ``on_pick(star_id)``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from chemlatent.errors import ChemlatentError
from chemlatent.io.export import NO_HUB

SELECT = "table.select.rowList"
HIGHLIGHT = "table.highlight.row"
TABLE_SUFFIXES = (".vot", ".votable", ".xml", ".fits", ".fit", ".fts")


def _table_star_ids(path: Path) -> tuple[np.ndarray, str]:
    """(star_ids in row order, the survey path of its provenance or "")."""
    from astropy.table import Table

    fmt = "votable" if path.suffix.lower() in (".vot", ".votable", ".xml") else "fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(path, format=fmt)
    if "star_id" not in t.colnames:
        raise ChemlatentError(f"{path.name} has no star_id column")
    meta = {str(k).lower(): v for k, v in t.meta.items()}
    survey = str(meta.get("survey_path") or meta.get("survey") or "")
    if not survey and fmt == "votable":  # INFO elements of the resource
        from astropy.io.votable import parse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vt = parse(str(path))
        infos = {i.name: i.value for r in vt.resources for i in r.infos}
        survey = str(infos.get("survey_path", ""))
    return np.asarray(t["star_id"], np.int64), survey


class SampReceiver:
    """Listen to TOPCAT's row selections and highlights of this survey's tables."""

    def __init__(self, survey_path: str | Path, on_select: Callable[[np.ndarray], None],
                 on_pick: Callable[[int], None], *, on_note: Callable[[str], None] = lambda text: None,
                 name: str = "chemlatent explorer") -> None:
        self.survey_path = str(Path(survey_path).resolve())
        self.on_select, self.on_pick, self.on_note = on_select, on_pick, on_note
        self.name = name
        self.client = None
        self._tables: dict[str, np.ndarray] = {}  # url -> star_ids
        self._lock = threading.Lock()

    # -- tables -------------------------------------------------------------------
    def register(self, url: str, star_ids) -> None:
        """Know a table without reading it (e.g. one just sent)."""
        with self._lock:
            self._tables[url] = np.asarray(star_ids, np.int64)

    def star_ids_for(self, url: str) -> np.ndarray:
        """The star_ids of a table's rows (raises ChemlatentError when it is not this
        survey's table)."""
        with self._lock:
            if url in self._tables:
                return self._tables[url]
        parsed = urlparse(url or "")
        if parsed.scheme != "file":
            raise ChemlatentError("the table is not a file on this machine")
        path = Path(url2pathname(parsed.path))
        if path.suffix.lower() not in TABLE_SUFFIXES or not path.is_file():
            raise ChemlatentError(f"{path.name} is not a VOTable or FITS table here")
        ids, survey = _table_star_ids(path)
        if survey and str(Path(survey).resolve()) != self.survey_path:
            raise ChemlatentError(f"{path.name} holds stars of another survey ({Path(survey).name})")
        if not survey:
            raise ChemlatentError(f"{path.name} does not say which survey its stars are from")
        self.register(url, ids)
        return ids

    # -- messages -----------------------------------------------------------------
    def handle(self, mtype: str, params: dict) -> None:
        """Act on one message (what the hub's callbacks call; tests may call it directly)."""
        try:
            ids = self.star_ids_for(str(params.get("url", "")))
            if mtype == SELECT:
                rows = np.asarray([int(r) for r in params.get("row-list", [])], np.int64)
                rows = rows[(rows >= 0) & (rows < ids.size)]
                self.on_select(ids[rows])
            elif mtype == HIGHLIGHT:
                row = int(params.get("row", -1))
                if not 0 <= row < ids.size:
                    raise ChemlatentError(f"row {row} is not in the table")
                self.on_pick(int(ids[row]))
        except (ChemlatentError, OSError, ValueError, TypeError) as exc:
            self.on_note(f"SAMP {mtype} ignored: {exc}")

    def _notification(self, private_key, sender_id, mtype, params, extra) -> None:
        self.handle(mtype, params)

    def _call(self, private_key, sender_id, msg_id, mtype, params, extra) -> None:
        self.handle(mtype, params)
        try:
            self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})
        except Exception:  # the sender left: nothing to tell
            pass

    # -- connection -----------------------------------------------------------------
    def start(self, hub_timeout: float = 5.0) -> None:
        """Register with the running hub (raises ChemlatentError when there is none)."""
        from astropy.utils.exceptions import AstropyDeprecationWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyDeprecationWarning)
            from astropy.samp import SAMPIntegratedClient, conf

        client = SAMPIntegratedClient(name=self.name, description="chemlatent: selects the stars "
                                      "TOPCAT selects", callable=True)
        err: list = []

        def connect() -> None:
            try:
                with conf.set_temp("use_internet", False):
                    client.connect()
            except Exception as exc:
                err.append(exc)

        th = threading.Thread(target=connect, daemon=True)
        th.start()
        th.join(hub_timeout)
        if th.is_alive() or err:
            raise ChemlatentError(NO_HUB)
        for mtype in (SELECT, HIGHLIGHT):
            client.bind_receive_notification(mtype, self._notification)
            client.bind_receive_call(mtype, self._call)
        self.client = client

    @property
    def listening(self) -> bool:
        return self.client is not None and self.client.is_connected

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:
                pass
        self.client = None
