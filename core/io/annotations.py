"""The annotations database: per-star verdicts, saved candidate lists, threshold presets.

SQLAlchemy 2 Core over SQLite (default ``DIR/annotations.sqlite``, WAL journal,
``synchronous=FULL``) or any SQLAlchemy URL (``postgresql://...``).

Nothing is updated in place: each verdict change, each save of a list or preset under an
existing name is a new row; the latest row (highest id) wins, older ones are the history.
Every write is its own committed transaction, so a crash (even SIGKILL) loses nothing that
was reported as saved.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from chemlatent.errors import ChemlatentError

VERDICTS: tuple[str, ...] = ("candidate", "accepted", "rejected")
DB_NAME = "annotations.sqlite"

metadata = sa.MetaData()

verdicts_table = sa.Table(
    "verdicts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("star_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("list_name", sa.String(256), nullable=True),
)

lists_table = sa.Table(
    "candidate_lists", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, index=True),
    sa.Column("rule_json", sa.Text, nullable=False),
    sa.Column("n_stars", sa.Integer, nullable=False),
    sa.Column("star_ids", sa.LargeBinary, nullable=False),  # little-endian int64
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

selections_table = sa.Table(
    "selections", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, index=True),
    sa.Column("who", sa.String(128), nullable=False, index=True),
    sa.Column("n_stars", sa.Integer, nullable=False),
    sa.Column("star_ids", sa.LargeBinary, nullable=False),  # little-endian int64
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

presets_table = sa.Table(
    "presets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, index=True),
    sa.Column("rule_json", sa.Text, nullable=False),
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return os.environ.get("USER", "unknown")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def database_url(location: str | Path) -> str:
    """An SQLAlchemy URL: URLs pass through; a directory means DIR/annotations.sqlite."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir() or path.suffix == "":
        path = path / DB_NAME
    return f"sqlite:///{path.resolve()}"


@dataclass
class CandidateList:
    """A saved list of stars with the rule that produced it."""

    id: int
    name: str
    rule_json: str
    star_ids: np.ndarray
    who: str
    created: datetime


class AnnotationStore:
    """Verdicts, candidate lists and presets in one database.

    ``location``: a survey directory (uses DIR/annotations.sqlite), a file path or an
    SQLAlchemy URL. Tables are created when missing.
    """

    def __init__(self, location: str | Path, *, who: str | None = None) -> None:
        self.url = database_url(location)
        self.who = who or default_user()
        is_sqlite = self.url.startswith("sqlite")
        kwargs: dict = {}
        if is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ChemlatentError(f"cannot open annotations database {self.url!r} ({exc})") from None
        if is_sqlite:
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        try:
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ChemlatentError(f"cannot open annotations database {self.url!r} "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- verdicts --------------------------------------------------------------
    def set_verdict(self, star_id: int, verdict: str, note: str = "", *, who: str | None = None,
                    list_name: str | None = None) -> int:
        """Record a verdict for one star (a new row, committed); returns its id."""
        return self.set_verdicts([star_id], verdict, note, who=who, list_name=list_name)[0]

    def set_verdicts(self, star_ids, verdict: str, note: str = "", *, who: str | None = None,
                     list_name: str | None = None) -> list[int]:
        """The same verdict for many stars in one committed transaction; returns the ids."""
        if verdict not in VERDICTS:
            raise ChemlatentError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        now = _now()
        rows = [{"star_id": int(s), "verdict": verdict, "note": note or "",
                 "who": who or self.who, "created": now, "list_name": list_name}
                for s in np.atleast_1d(np.asarray(star_ids, dtype=np.int64))]
        ids = []
        with self.engine.begin() as conn:
            for row in rows:
                res = conn.execute(verdicts_table.insert().values(**row))
                ids.append(int(res.inserted_primary_key[0]))
        return ids

    def verdicts(self, star_ids=None) -> pd.DataFrame:
        """The current (latest) verdict per star: star_id, verdict, note, who, created, id."""
        v = verdicts_table
        latest = sa.select(sa.func.max(v.c.id).label("id")).group_by(v.c.star_id)
        ids = None
        if star_ids is not None:
            ids = np.atleast_1d(np.asarray(star_ids, dtype=np.int64))
            if ids.size <= 500:  # small: filter in SQL; large: in pandas (parameter limits)
                latest = latest.where(v.c.star_id.in_([int(s) for s in ids]))
        q = sa.select(v.c.star_id, v.c.verdict, v.c.note, v.c.who, v.c.created, v.c.id,
                      v.c.list_name).where(v.c.id.in_(latest.scalar_subquery())).order_by(v.c.star_id)
        df = self._frame(q)
        if ids is not None and ids.size > 500:
            df = df[df["star_id"].isin(ids)].reset_index(drop=True)
        return df

    def history(self, star_id: int | None = None) -> pd.DataFrame:
        """Every verdict row (oldest first), for one star or all."""
        v = verdicts_table
        q = sa.select(v).order_by(v.c.id)
        if star_id is not None:
            q = q.where(v.c.star_id == int(star_id))
        return self._frame(q)

    def verdict_rows(self, ids) -> pd.DataFrame:
        """Verdict rows by their ids."""
        v = verdicts_table
        return self._frame(sa.select(v).where(v.c.id.in_([int(i) for i in ids])).order_by(v.c.id))

    def _frame(self, q) -> pd.DataFrame:
        with self.engine.connect() as conn:
            res = conn.execute(q)
            df = pd.DataFrame(res.fetchall(), columns=list(res.keys()))
        if "created" in df.columns and len(df):
            df["created"] = pd.to_datetime([_utc(d) for d in df["created"]], utc=True)
        return df

    # -- candidate lists ---------------------------------------------------------
    def save_list(self, name: str, star_ids, rule_json: str | dict = "{}", *,
                  who: str | None = None) -> int:
        """Save (a new version of) a candidate list; returns its row id."""
        if not name or not str(name).strip():
            raise ChemlatentError("a candidate list needs a name")
        arr = np.asarray(star_ids, dtype="<i8").ravel()
        rule_text = rule_json if isinstance(rule_json, str) else json.dumps(rule_json)
        with self.engine.begin() as conn:
            res = conn.execute(lists_table.insert().values(
                name=str(name), rule_json=rule_text, n_stars=int(arr.size),
                star_ids=arr.tobytes(), who=who or self.who, created=_now()))
            return int(res.inserted_primary_key[0])

    def get_list(self, name: str) -> CandidateList:
        """The latest version of a saved list."""
        t = lists_table
        q = sa.select(t).where(t.c.name == str(name)).order_by(t.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            raise ChemlatentError(f"no saved candidate list named {name!r}")
        return CandidateList(row["id"], row["name"], row["rule_json"],
                             np.frombuffer(row["star_ids"], dtype="<i8").astype(np.int64),
                             row["who"], _utc(row["created"]))

    def lists(self) -> pd.DataFrame:
        """Saved lists, latest version of each name: name, n_stars, who, created, versions."""
        t = lists_table
        latest = sa.select(sa.func.max(t.c.id)).group_by(t.c.name).scalar_subquery()
        versions = sa.select(t.c.name, sa.func.count().label("versions")).group_by(t.c.name).subquery()
        q = (sa.select(t.c.id, t.c.name, t.c.n_stars, t.c.who, t.c.created, t.c.rule_json,
                       versions.c.versions)
             .join(versions, versions.c.name == t.c.name)
             .where(t.c.id.in_(latest)).order_by(t.c.name))
        return self._frame(q)

    # -- named selections (per user) ---------------------------------------------
    def save_selection(self, name: str, star_ids, *, who: str | None = None,
                       deleted: bool = False) -> int:
        """Save (a new version of) the user's named selection; returns its row id."""
        if not name or not str(name).strip():
            raise ChemlatentError("a selection needs a name")
        arr = np.unique(np.asarray(star_ids, dtype=np.int64)).astype("<i8")
        with self.engine.begin() as conn:
            res = conn.execute(selections_table.insert().values(
                name=str(name).strip(), who=who or self.who, n_stars=int(arr.size),
                star_ids=arr.tobytes(), deleted=bool(deleted), created=_now()))
            return int(res.inserted_primary_key[0])

    def _latest_selection(self, name: str, who: str | None):
        t = selections_table
        q = (sa.select(t).where(t.c.name == str(name).strip(), t.c.who == (who or self.who))
             .order_by(t.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None or row["deleted"] else row

    def get_selection(self, name: str, *, who: str | None = None) -> CandidateList:
        """The latest version of the user's named selection."""
        row = self._latest_selection(name, who)
        if row is None:
            raise ChemlatentError(f"no saved selection named {name!r}")
        return CandidateList(row["id"], row["name"], "{}",
                             np.frombuffer(row["star_ids"], dtype="<i8").astype(np.int64),
                             row["who"], _utc(row["created"]))

    def selections(self, *, who: str | None = None) -> pd.DataFrame:
        """The user's saved selections (latest version of each name, deleted ones left out):
        id, name, n_stars, created."""
        t = selections_table
        latest = (sa.select(sa.func.max(t.c.id)).where(t.c.who == (who or self.who))
                  .group_by(t.c.name).scalar_subquery())
        q = (sa.select(t.c.id, t.c.name, t.c.n_stars, t.c.created)
             .where(t.c.id.in_(latest), t.c.deleted.is_(False)).order_by(t.c.name))
        return self._frame(q)

    def rename_selection(self, old: str, new: str, *, who: str | None = None) -> int:
        """Give the user's selection ``old`` the name ``new`` (the old name is deleted)."""
        sel = self.get_selection(old, who=who)
        if str(new).strip() == str(old).strip():
            return sel.id
        if self._latest_selection(new, who) is not None:
            raise ChemlatentError(f"a selection named {new!r} exists already")
        row = self.save_selection(new, sel.star_ids, who=who)
        self.save_selection(old, np.zeros(0, np.int64), who=who, deleted=True)
        return row

    def delete_selection(self, name: str, *, who: str | None = None) -> None:
        """Delete the user's named selection (a deletion row; the history stays)."""
        self.get_selection(name, who=who)  # raises when there is none
        self.save_selection(name, np.zeros(0, np.int64), who=who, deleted=True)

    # -- presets ------------------------------------------------------------------
    def save_preset(self, name: str, rule_json: str | dict, *, who: str | None = None) -> int:
        """Save (a new version of) a named threshold preset; returns its row id."""
        if not name or not str(name).strip():
            raise ChemlatentError("a preset needs a name")
        text = rule_json if isinstance(rule_json, str) else json.dumps(rule_json)
        try:
            json.loads(text)
        except ValueError as exc:
            raise ChemlatentError(f"preset rule is not valid JSON ({exc})") from None
        with self.engine.begin() as conn:
            res = conn.execute(presets_table.insert().values(
                name=str(name), rule_json=text, who=who or self.who, created=_now()))
            return int(res.inserted_primary_key[0])

    def get_preset(self, name: str) -> str | None:
        """The rule JSON of the latest preset with this name, or None."""
        t = presets_table
        q = sa.select(t.c.rule_json).where(t.c.name == str(name)).order_by(t.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def presets(self) -> pd.DataFrame:
        """Saved presets, latest version of each name."""
        t = presets_table
        latest = sa.select(sa.func.max(t.c.id)).group_by(t.c.name).scalar_subquery()
        return self._frame(sa.select(t).where(t.c.id.in_(latest)).order_by(t.c.name))


def open_annotations(location: str | Path, *, who: str | None = None) -> AnnotationStore:
    """Open (creating when needed) the annotations database of a survey or URL."""
    return AnnotationStore(location, who=who)
