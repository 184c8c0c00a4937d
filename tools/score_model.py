"""Score a trained model on a survey it never saw: tools/score_model.py MODEL_DIR SURVEY NAME.

Encodes SURVEY into runs/NAME-val.parquet, writes runs/NAME-score.json and prints the
docs/model-screens.md row (the same scoring as tools/screen.py).
"""
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from screen import row, score  # noqa: E402

from chemlatent.encode.streaming import encode_survey  # noqa: E402
from chemlatent.io.store import Survey  # noqa: E402
from chemlatent.model.modelio import load_model  # noqa: E402

if __name__ == "__main__":
    model, val, name = sys.argv[1], Survey(sys.argv[2]), sys.argv[3]
    p = Path(f"runs/{name}-val.parquet")
    p.unlink(missing_ok=True)
    lat = pd.read_parquet(encode_survey(val, load_model(model), out_path=p))
    m = score(lat, val.catalog)
    Path(f"runs/{name}-score.json").write_text(json.dumps(m, indent=1, default=str))
    print(row(name, m))
