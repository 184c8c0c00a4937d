"""The latent map's axes and colour, column values and the picked star."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import param

from chemlatent.errors import ChemlatentError
from chemlatent.explore import selection
from chemlatent.explore.survey import (
    AXIS_COLUMNS,
    SurveyData,
)


class MapState(param.Parameterized):
    """Axes and colour of the map; the picked star and its spectrum."""

    x_axis = param.Selector(default="z_fe", objects=list(AXIS_COLUMNS), doc="map x axis")
    y_axis = param.Selector(default="z_c", objects=list(AXIS_COLUMNS), doc="map y axis")
    color_by = param.Selector(default="density", objects=["density"], doc="map colour")
    picked = param.Integer(default=None, allow_None=True, doc="star_id of the picked star")

    data: SurveyData
    message: str
    say: Callable[[str, str], None]

    # -- columns -------------------------------------------------------------
    def values(self, column: str) -> np.ndarray:
        if column == "flagged":
            return self.flagged.astype(np.float32)
        if column == "selected":
            return self.selected.astype(np.float32)
        return self.data.frame[column].to_numpy()

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values(self.x_axis), self.values(self.y_axis)

    # -- picking -------------------------------------------------------------
    def pick_at(self, x: float, y: float, x_range=None, y_range=None,
                max_distance: float = 0.03) -> int | None:
        """Pick the star nearest a click on the map (screen-normalised); returns its star_id."""
        xs, ys = self.xy
        k = selection.nearest_index(xs, ys, x, y, x_range, y_range, max_distance)
        if k is None:
            self.say("no star near the click", "map")
            return None
        sid = int(self.data.frame["star_id"].iat[k])
        self.picked = sid
        return sid

    def pick_star(self, star_id: int | None) -> None:
        if star_id is not None and self.data.index_of(star_id) is None:
            raise ChemlatentError(f"star {star_id} is not in this survey")
        self.picked = None if star_id is None else int(star_id)

    def picked_spectrum(self):
        """StarSpectrum of the picked star (None when none is picked); the last one is kept,
        so the page's two spectrum panels read and decode a star once."""
        if self.picked is None:
            return None
        data, picked = self.data, self.picked
        last = self.__dict__.get("_last_spectrum")
        if last is not None and last[0] is data and last[1] == picked:
            return last[2]
        spec = data.spectrum(picked)
        self._last_spectrum = (data, picked, spec)
        return spec

    def picked_info(self) -> dict:
        if self.picked is None:
            return {}
        i = self.data.index_of(self.picked)
        return {} if i is None else self.data.latent_row(i)
