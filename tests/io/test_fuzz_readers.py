"""Fuzzing the spectrum readers: damaged files give one clean error line, never a crash.

Random bytes, and real layouts (the LAMOST files in tests/data and every fixture writer of
``fixtures_ingest``) with bytes flipped, inserted, deleted or cut off and FITS header cards
rewritten, go through :func:`chemlatent.io.readers.iter_items` and the per-spectrum ingest step
(:func:`chemlatent.io.ingest.prepare`). Whatever comes out must be a :class:`RawSpectrum` that
keeps the reader's promises, or a :class:`ChemlatentError` whose message is one short line.

The examples are derandomised so CI is reproducible; ``CHEMLATENT_FUZZ_EXAMPLES=N`` runs N
random examples per test instead (for a longer hunt).
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import fixtures_ingest as fx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chemlatent.errors import ChemlatentError, FormatError
from chemlatent.io.ingest import ingest_files, prepare
from chemlatent.io.readers import RawSpectrum, iter_items
from chemlatent.spectra.grid import DEFAULT_GRID

DATA = Path(__file__).parents[1] / "data"
_HUNT = int(os.environ.get("CHEMLATENT_FUZZ_EXAMPLES", "0"))
MAX_ITEMS = 4  # spectra checked per file (multi-spectrum tables)


def fuzz_settings(examples: int):
    """Bounded, reproducible runs (random and longer with CHEMLATENT_FUZZ_EXAMPLES)."""
    return settings(max_examples=_HUNT or examples, deadline=None, derandomize=not _HUNT,
                    database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Seeds:
    """Uncompressed bytes of every layout: fixture writers plus the real LAMOST files."""
    d = tmp_path_factory.mktemp("fuzz-seeds")
    out: dict[str, bytes] = {}
    for layout in fx.ALL_LAYOUTS:
        data = fx.build(layout, d).read_bytes()
        out[layout] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    for p in sorted(DATA.glob("*.fits.gz")):
        out[p.name] = gzip.decompress(p.read_bytes())
    return Seeds(out)


def check_message(exc: BaseException) -> None:
    assert isinstance(exc, ChemlatentError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert text and "\n" not in text and len(text) <= 300, repr(text)


def check_spectrum(spec: RawSpectrum) -> None:
    """The promises of RawSpectrum, then the ingest step for one spectrum."""
    assert spec.wave.ndim == 1 and spec.wave.size >= 5
    assert spec.flux.shape == spec.ivar.shape == spec.mask.shape == spec.wave.shape
    assert np.isfinite(spec.wave).all() and (spec.wave > 0).all()
    assert (np.diff(spec.wave) > 0).all()
    assert np.isfinite(spec.flux).all()
    assert np.isfinite(spec.ivar).all() and (spec.ivar >= 0).all() and (spec.ivar > 0).any()
    assert not (spec.ivar[spec.mask] > 0).any()
    try:
        flux, ivar, snr = prepare(spec, DEFAULT_GRID)
    except FormatError as exc:
        check_message(exc)
        return
    assert flux.shape == ivar.shape == (DEFAULT_GRID.npix,)
    assert np.isfinite(flux).all() and np.isfinite(ivar).all() and (ivar >= 0).all()
    assert (ivar > 0).any()


def _open_files() -> set[str]:
    """What this process's file descriptors point to (empty where /proc is missing)."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return set()
    out = set()
    for fd in os.listdir(fd_dir):
        try:
            out.add(os.readlink(fd_dir / fd))
        except OSError:
            pass
    return out


def read_all(path: Path) -> int:
    """Read a file the way ingest does (and check it is closed after); returns how many
    spectra came out."""
    before = _open_files()
    try:
        return _read_all(path)
    finally:
        leaked = [f for f in _open_files() - before if f.endswith(path.name)]
        assert not leaked, f"{path.name} left open"


def _read_all(path: Path) -> int:
    n = 0
    try:
        for i, item in enumerate(iter_items(path)):
            if isinstance(item, BaseException):
                check_message(item)
            else:
                check_spectrum(item)
                n += 1
            if i + 1 >= MAX_ITEMS:
                break
    except ChemlatentError as exc:
        check_message(exc)
    return n


# --------------------------------------------------------------------------- mutations

OPS = st.sampled_from(["flip", "insert", "delete", "overwrite", "truncate"])


@st.composite
def positions(draw, size: int) -> int:
    """Byte offsets, biased to the first and last KB (headers, superblocks, footers)."""
    where = draw(st.sampled_from(["head", "tail", "any"]))
    if size <= 1:
        return 0
    if where == "head":
        return draw(st.integers(0, min(size - 1, 2879)))
    if where == "tail":
        return size - 1 - draw(st.integers(0, min(size - 1, 1023)))
    return draw(st.integers(0, size - 1))


class Seeds:
    """Seed files by name (short repr: failing examples print their arguments)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = files

    def __getitem__(self, name: str) -> bytes:
        return self._files[name]

    def __iter__(self):
        return iter(self._files)

    def __repr__(self) -> str:
        return f"<{len(self._files)} seed files>"


def mutate(draw, data: bytes) -> bytes:
    """Flip, insert, delete, overwrite or cut bytes (1 to 4 edits)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4), label="edits")):
        op = draw(OPS, label="op")
        pos = draw(positions(len(buf)), label="at")
        if op == "flip":
            buf[pos] ^= draw(st.integers(1, 255), label="xor")
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=64), label="bytes")
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 256), label="n")]
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=32), label="bytes")
            buf[pos:pos + len(chunk)] = chunk
        else:
            del buf[pos:]
        if not buf:
            break
    return bytes(buf)


CARD_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "5", "99999999999", "-99999999999", "1E308", "NAN",
                     "'abc'", "'", "T", "F", "''", "3.5E-300", "'AWAV'", "'WAVE-LOG'", "'LAMOST'",
                     "'COADD'", "'E'", "'4100E'", "'1PE(10)'", "'20A'", "'Angstrom'", "'log'"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)


def fits_cards(data: bytes) -> list[int]:
    """Offsets of the 80-character header cards of every HDU (up to each END card)."""
    out = []
    pos = 0
    while pos + 2880 <= len(data) and len(out) < 2000:
        block = data[pos:pos + 2880]
        if pos == 0 and not block.startswith(b"SIMPLE"):
            break
        if not (block.startswith(b"SIMPLE") or block.startswith(b"XTENSION")) and not out:
            break
        end = None
        for i in range(0, 2880, 80):
            out.append(pos + i)
            if block[i:i + 8] == b"END     ":
                end = i
                break
        if end is None:
            pos += 2880
            continue
        # skip to the next HDU: find the next block that opens with XTENSION
        nxt = data.find(b"XTENSION", pos + 2880)
        while nxt != -1 and nxt % 2880:
            nxt = data.find(b"XTENSION", nxt + 1)
        if nxt == -1:
            break
        pos = nxt
    return out


def corrupt_header(draw, data: bytes) -> bytes:
    """Rewrite 1 to 3 header cards: a bad value, another keyword, or a blank card."""
    cards = fits_cards(data)
    if not cards:
        return data
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3), label="cards")):
        at = cards[draw(st.integers(0, len(cards) - 1), label="card")]
        kind = draw(st.sampled_from(["value", "value", "keyword", "blank"]), label="kind")
        if kind == "value":
            text = draw(CARD_VALUES, label="value").encode("ascii", "replace")
            card = bytes(buf[at:at + 8]) + b"= " + text.rjust(20)[:70]
        elif kind == "keyword":
            card = draw(st.sampled_from([b"NAXIS1", b"NAXIS2", b"NAXIS", b"BITPIX", b"TFORM1",
                                         b"TFIELDS", b"PCOUNT", b"CRVAL1", b"CDELT1", b"TTYPE1",
                                         b"END", b"XTENSION", b"EXTEND"]), label="keyword").ljust(8) + bytes(
                buf[at + 8:at + 80])
        else:
            card = b" " * 80
        buf[at:at + 80] = card[:80].ljust(80)
    return bytes(buf)


def write(tmp: Path, name: str, data: bytes, gz: bool) -> Path:
    path = tmp / (name + (".fits.gz" if gz else ""))
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


# --------------------------------------------------------------------------- tests


@fuzz_settings(160)
@given(prefix=st.sampled_from([b"", b"SIMPLE  =                    T", b"\x89HDF\r\n\x1a\n",
                               b"PAR1", b"\x1f\x8b\x08\x00"]),
       body=st.binary(max_size=4000))
def test_random_bytes(tmp_path_factory, prefix: bytes, body: bytes) -> None:
    path = tmp_path_factory.mktemp("rand") / "spec-random.fits"
    path.write_bytes(prefix + body)
    read_all(path)


@fuzz_settings(400)
@given(data=st.data())
def test_mutated_real_layouts(seeds, tmp_path_factory, data) -> None:
    name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
    blob = mutate(data.draw, seeds[name])
    gz = data.draw(st.booleans(), label="gzip") and blob[:6] == b"SIMPLE"
    path = write(tmp_path_factory.mktemp("mut"), name, blob, gz)
    read_all(path)


FITS_SEEDS = ("sdss", "lamost_dr7", "lamost_dr8", "wcs1d_linear", "wcs1d_log", "fits_rows",
              "fits_long", "spec-55859-F5902_sp01-001_dr7.fits.gz",
              "spec-55859-F5902_sp01-013_dr8.fits.gz")


@fuzz_settings(400)
@given(data=st.data())
def test_corrupted_fits_headers(seeds, tmp_path_factory, data) -> None:
    name = data.draw(st.sampled_from(FITS_SEEDS), label="seed")
    blob = corrupt_header(data.draw, seeds[name])
    if data.draw(st.booleans(), label="and bytes"):
        blob = mutate(data.draw, blob)
    path = write(tmp_path_factory.mktemp("hdr"), name, blob, data.draw(st.booleans(), label="gzip"))
    read_all(path)


@fuzz_settings(16)
@given(data=st.data())
def test_ingest_survives_damaged_files(seeds, tmp_path_factory, data) -> None:
    """Whole ingest runs (debug: unexpected errors propagate) on damaged plus good files."""
    tmp = tmp_path_factory.mktemp("ing")
    files = []
    for i in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
        if data.draw(st.booleans(), label="header"):
            blob = corrupt_header(data.draw, seeds[name])
        else:
            blob = mutate(data.draw, seeds[name])
        files.append(write(tmp, f"f{i}-{name}", blob, False))
    good = data.draw(st.booleans(), label="plus a good file")
    if good:
        files.append(fx.build("sdss", tmp))
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        survey, problems = ingest_files(tmp / "survey", files,
                                        on_error=lambda f, m: seen.append(m), debug=True)
    # damaged values must not add warning lines to the one line per skipped file
    assert not [w for w in caught if "/readers/" in w.filename or "/ingest.py" in w.filename
                or "numpy" in w.filename or "astropy" in w.filename], [str(w.message) for w in caught]
    for msg in seen:
        assert msg and "\n" not in msg and len(msg) <= 300
    if good:
        assert survey is not None
    if survey is not None:
        assert len(survey) >= 1 and len(survey.catalog) == len(survey)
        chunk = survey.read(0, len(survey))
        assert np.isfinite(chunk.flux).all() and np.isfinite(chunk.ivar).all()
    else:
        assert not (tmp / "survey").exists()
