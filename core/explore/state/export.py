"""Exports of the candidate table: file bytes with provenance, and SAMP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore.survey import (
    EXPORT_FORMATS,
    MAX_EXPORT_ROWS,
    SurveyData,
)
from chemlatent.flags.pipeline import calibration_text, candidate_frame, provenance_extra


class ExportState(param.Parameterized):
    """Export format and the export actions."""

    export_format = param.Selector(default="csv", objects=list(EXPORT_FORMATS))

    data: SurveyData
    message: str

    # -- export --------------------------------------------------------------
    def export_frame(self) -> pd.DataFrame:
        """The table's stars with latents, scores, calibrated dex and catalog columns."""
        idx = np.flatnonzero(self.table_mask())
        if idx.size > MAX_EXPORT_ROWS:
            raise ChemlatentError(f"{idx.size:,} stars is more than a download may hold "
                                  f"({MAX_EXPORT_ROWS:,}): narrow the table, or use chemlatent flag "
                                  "on the command line")
        frame = candidate_frame(self.data.latents, idx, self.data.engine.ref,
                                catalog=self.data.survey.catalog, calibration=self.data.calibration,
                                include_prior=False)
        v = self._verdicts(frame["star_id"].to_numpy()) if len(frame) else None
        if v is not None and len(v):
            frame = frame.merge(v[["star_id", "verdict", "note"]], on="star_id", how="left")
            frame["verdict"] = frame["verdict"].fillna("")
            frame["note"] = frame["note"].fillna("")
        return frame

    def export_meta(self) -> dict:
        from chemlatent.io.export import provenance

        extra = {"n_stars": self.data.n, "n_flagged": self.n_flagged,
                 "table": self.table_source}
        if self.counts is not None:
            extra.update(provenance_extra(self.counts, calibration=self.data.calibration))
        else:
            cal = self.data.calibration
            extra["calibration"] = calibration_text(cal) if cal is not None else "none"
        # a download leaves the server: names, not the server's paths
        return provenance(survey_path=self.data.path, model_name=self.data.model_name,
                          model_dir=str(self.data.model_dir) if self.data.model_dir else None,
                          rule=self.rule, extra=extra, paths=False,
                          latents_path=self.data.latents_path)

    def export_filename(self, fmt: str | None = None) -> str:
        fmt = fmt or self.export_format
        what = self.preset if self.table_source == "flagged" and self.preset != "none" else \
            self.table_source.replace(" ", "_")
        return f"{self.data.path.name}_{what}.{EXPORT_FORMATS[fmt]}"

    def export(self, fmt: str | None = None) -> tuple[str, bytes]:
        """(file name, file bytes) of the candidate table in csv, fits or votable."""
        from chemlatent.io.export import export_bytes

        fmt = fmt or self.export_format
        frame = self.export_frame()
        data = export_bytes(frame, fmt, self.export_meta())
        self.message = f"exported {len(frame):,} stars as {fmt}"
        return self.export_filename(fmt), data

    def send_samp(self, hub_timeout: float = 3.0) -> str:
        """Send the table to TOPCAT/Aladin; returns (and shows) a message, never raises."""
        from chemlatent.io.export import send_table_samp

        try:
            frame = self.export_frame()
            res = send_table_samp(frame, f"chemlatent {self.export_filename().rsplit('.', 1)[0]}",
                                  hub_timeout=hub_timeout, meta=self.export_meta())
        except ChemlatentError as exc:
            self.message = f"SAMP: {exc}"
            return self.message
        n = len(res["loaded_by"])
        self.message = f"sent {len(frame):,} stars over SAMP to {n} client(s)"
        return self.message
