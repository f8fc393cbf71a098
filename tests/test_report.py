import math

import pandas as pd
import pytest

from spinelib.core.headlines import COLUMNS, collect_headlines, record_headlines
from spinelib.paper.report import headline_table


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
    assert html.count('<tr class="headline">') == 2 and html.count('<tr class="headline-section">') == 1
    assert "REAL" in html and "SYNTHETIC" in html and "SYNTHETIC</b> <small>synthetic" not in html
    assert "<th>profile</th>" not in html and "profile tiny" not in html  # one profile: the page says it once
    assert "(60 patients)" not in html and "60 patients" in html
    assert html.count("profile tiny") == 0 and headline_table(frame, show_profile=True).count("profile tiny") == 2
    assert 'href="notebooks/03_unet_segmentation.html"' in html and "[0.900, 0.920]" in html
    assert (tmp_path / "headlines" / "03_unet_segmentation.run.json").exists()


def test_headlines_refuse_unlabelled_data(tmp_path):
    with pytest.raises(ValueError, match="real' or 'synthetic"):
        record_headlines(tmp_path, "x", [{"section": "s", "quantity": "q", "ours": 1, "data": "clinical",
                                          "dataset": "d"}], profile="tiny")
    with pytest.raises(ValueError, match="lack column"):
        record_headlines(tmp_path, "x", [{"section": "s", "ours": 1}], profile="tiny")
    assert collect_headlines(tmp_path / "none").empty and isinstance(collect_headlines(tmp_path), pd.DataFrame)


def test_a_page_without_its_data_records_an_empty_headline_table(tmp_path):
    # page 3b on a machine without the AASCE X-rays has no row to record; the book must still build
    record_headlines(tmp_path, "02_segmentation_experiments", [
        {"section": "s", "quantity": "q", "ours": 0.5, "data": "synthetic", "dataset": "d"}], profile="tiny")
    path = record_headlines(tmp_path, "03b_aasce_segmentation", [], profile="tiny", seed=0)
    assert list(pd.read_csv(path).columns) == COLUMNS and pd.read_csv(path).empty
    frame = collect_headlines(tmp_path)
    assert list(frame["page"]) == ["02_segmentation_experiments"] and frame.loc[0, "ours"] == 0.5
    html = headline_table(frame)
    assert html.count('<tr class="headline">') == 1


def test_findings_say_real_or_synthetic_and_come_from_the_frames(tmp_path):
    from spinelib.paper.report import findings

    record_headlines(tmp_path / "results", "aasce_unet", [
        {"section": "Segmentation: real AP vertebrae", "quantity": "Dice, AASCE vertebral bodies T1-L5 (U-Net)",
         "ours": 0.8412, "ci_low": 0.82, "ci_high": 0.86, "data": "real", "dataset": "AASCE, 47 validation patients"},
    ], profile="long run")
    record_headlines(tmp_path / "build", "05_classification_results", [
        {"section": "Classification", "quantity": "normal/damaged accuracy, Lite0 ImageNet + paper head (patient CV)",
         "paper": 0.9484, "ours": 0.7333, "data": "synthetic", "dataset": "synthetic, 60 patients"},
        {"section": "Classification", "quantity": "normal/damaged accuracy, shortcut check: image sizes only",
         "ours": 0.9167, "data": "synthetic", "dataset": "synthetic, 60 patients"},
    ], profile="ci")
    text = findings(collect_headlines(tmp_path / "results"), collect_headlines(tmp_path / "build"), "ci")
    lines = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(lines) == 2 and "REAL (AASCE)" in lines[0] and "SYNTHETIC" in lines[1]
    assert "0.841" in lines[0] and "0.820–0.860" in lines[0] and "0.733" in lines[1] and "0.917" in lines[1]
    assert "94.8 %" in lines[1] and "`ci`" in text
    empty = findings(collect_headlines(tmp_path / "results"), collect_headlines(tmp_path / "none"), "tiny")
    assert "No synthetic result was recorded" in empty


def test_page_table_is_readable():
    """Issue 17: the tables a page shows: renamed headers, fixed decimals (no 8.288e-04), the CI in one
    cell, the index as an ordinary headed column, fractions as percentages."""
    from spinelib.book import csv_link, page_table, source_listing

    frame = pd.DataFrame({"dice": [0.81234, math.nan], "lo": [0.7, 0.1], "hi": [0.9, 0.2], "minutes": [8.288e-04, 2.0],
                          "white": [0.0123, 0.5], "ok": [True, False]},
                         index=pd.Index(["Ap_Vertebra", "Ap_Pedicle"], name="structure"))
    html = page_table(frame, {"dice": "Dice (95% CI)", "minutes": "CPU (min)", "white": "white (%)", "ok": "done"},
                      ci={"dice": ("lo", "hi")}, digits={"CPU (min)": 1}, percent=("white (%)",)).to_html()
    assert "0.812 (0.700–0.900)" in html and "e-04" not in html and ">0.0<" in html and ">1.230<" in html
    assert ">structure<" in html and ">yes<" in html and ">–<" in html and ">lo<" not in html
    assert page_table(frame, index=False).data.columns[0] == "dice"
    assert 'href="../tables/02_table2.csv"' in csv_link("outputs/ci/02_table2.csv").data
    listing = source_listing(page_table).data
    assert listing.startswith("```python\n# spinelib.book.page_table\ndef page_table(") and listing.endswith("```")
    brief = source_listing(_three_paragraphs).data
    assert "summary" in brief and "formula" in brief and "details" not in brief and "rest of the docstring" in brief
    assert "return 1" in brief


def _three_paragraphs():
    """A summary.

    A formula.

    Long details.
    """
    return 1


def test_page_numbers_and_moved_sections():
    from spinelib.paper.report import page_number, page_of

    assert page_number("03b_aasce_segmentation") == "3b" and page_number("07_cobb_angles") == "7"
    assert page_of("03_unet_segmentation", "Segmentation: real AP vertebrae") == "03b_aasce_segmentation"
    assert page_of("03_unet_segmentation", "Segmentation: Table 3 (paper's recipe)") == "03_unet_segmentation"
    import pandas as pd

    from spinelib.paper.report import with_current_pages

    frame = pd.DataFrame({"page": ["03_unet_segmentation"] * 2,
                          "section": ["Segmentation: real AP vertebrae", "Segmentation: final pipeline"]})
    assert list(with_current_pages(frame)["page"]) == ["03b_aasce_segmentation", "03_unet_segmentation"]


def test_shown_path_is_never_absolute(tmp_path):
    from spinelib.book import shown_path

    assert shown_path(tmp_path / "runs" / "best.keras", tmp_path) == "output folder/runs/best.keras"
    assert shown_path("/somewhere/else/best.keras", tmp_path) == "best.keras"
