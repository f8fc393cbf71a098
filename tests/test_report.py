import math

import pandas as pd
import pytest

from spinelib.paper.report import collect_headlines, headline_table, record_headlines


def test_headlines_round_trip_and_render(tmp_path):
    record_headlines(tmp_path, "02_segmentation_experiments", [
        {"section": "segmentation", "quantity": "Dice, AP pedicle (BCE)", "paper": 0.0, "ours": 0.01,
         "data": "synthetic", "dataset": "synthetic (60 patients)"},
    ], profile="tiny", seed=0)
    record_headlines(tmp_path, "03_unet_segmentation", [
        {"section": "segmentation", "quantity": "Dice, AP vertebra", "paper": 0.7711, "ours": 0.91,
         "ci_low": 0.9, "ci_high": 0.92, "data": "real", "dataset": "AASCE"},
    ], profile="tiny")
    frame = collect_headlines(tmp_path)
    assert list(frame["page"]) == ["02_segmentation_experiments", "03_unet_segmentation"]
    assert math.isnan(frame.loc[0, "ci_low"]) and frame.loc[1, "ci_high"] == 0.92
    html = headline_table(frame, link_prefix="notebooks/")
    assert html.count("<tr>") == 3 and "REAL" in html and "SYNTHETIC" in html
    assert 'href="notebooks/03_unet_segmentation.html"' in html and "[0.900, 0.920]" in html
    assert (tmp_path / "headlines" / "03_unet_segmentation.run.json").exists()


def test_headlines_refuse_unlabelled_data(tmp_path):
    with pytest.raises(ValueError, match="real' or 'synthetic"):
        record_headlines(tmp_path, "x", [{"section": "s", "quantity": "q", "ours": 1, "data": "clinical",
                                          "dataset": "d"}], profile="tiny")
    with pytest.raises(ValueError, match="lack column"):
        record_headlines(tmp_path, "x", [{"section": "s", "ours": 1}], profile="tiny")
    assert collect_headlines(tmp_path / "none").empty and isinstance(collect_headlines(tmp_path), pd.DataFrame)
