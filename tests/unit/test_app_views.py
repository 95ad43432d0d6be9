"""View values and figure helpers: patterns survive their encoding, colour ranges are what was asked, numbers
read as numbers, figures carry the export config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headscope.app import figures, views


def test_pattern_encoding_round_trips_within_its_resolution() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((37, 37))
    a = np.tril(a) / np.tril(a).sum(-1, keepdims=True)
    back = views.decode_pattern(views.encode_pattern(a), 37)
    assert np.abs(back - a).max() <= 0.5 / 65535 + 1e-12
    assert len(views.encode_pattern(np.zeros((256, 256)))) == 4 * -(
        -2 * 256 * 256 // 3
    )  # 175 kB at 256 tokens


def test_attention_value_checks_shapes_and_head_count() -> None:
    toks, ids = ["a", " b"], [1, 2]
    with pytest.raises(ValueError, match="expected"):
        views.attention_value(toks, ids, {"L0 H0": np.eye(3)}, title="t")
    with pytest.raises(ValueError, match="between 1 and"):
        views.attention_value(
            toks, ids, {f"h{i}": np.eye(2) for i in range(views.MAX_VIEW_HEADS + 1)}, title="t"
        )
    v = views.attention_value(toks, ids, {"L0 H0": np.eye(2)}, title="t")
    assert v["tokens"] == toks and v["ids"] == ids and len(v["heads"]) == 1


def test_grid_value_keeps_the_range_it_was_given_and_centres_diverging_scales() -> None:
    v = views.grid_value([[0.5, 1.0], [2.0, np.nan]], title="t", unit="bits", zmin=0.0, zmax=4.0)
    assert (v["zmin"], v["zmax"]) == (0.0, 4.0) and v["z"][1][1] is None
    d = views.grid_value([[-0.2, 0.5]], title="t", unit="bits", scale="diverging")
    assert (d["zmin"], d["zmax"]) == (-0.5, 0.5)
    assert v["flat"] is None and d["flat"] is None


def test_a_grid_where_every_head_has_one_value_says_so() -> None:
    """Its colour bar reads "all 1.41", not the range 1.41 … 2.41 that keeps the colour maths finite."""
    v = views.grid_value([[1.414, 1.414], [1.414, None]], title="t", unit="count")
    assert v["flat"] == v["zmin"] == 1.414 and v["zmax"] == 1.414 + 1
    assert views.grid_value([[0.25, 0.25]], title="t", unit="u", scale="diverging")["flat"] == 0.25
    ranged = views.grid_value([[1.0, 1.0]], title="t", unit="u", zmin=0.0, zmax=2.0)
    assert ranged["flat"] is None  # a range was asked for: the bar shows it


def test_strip_value_rows_and_categories() -> None:
    row = views.strip_row(["The", " cat"], [1, 2], [0.1, None], label="q")
    v = views.strip_value([row], label="entropy", unit="bits")
    assert v["rows"][0]["values"] == [0.1, None] and v["unit"] == "bits"
    cats = views.strip_value(
        [views.strip_row(["a"], [1], cats=["drafted"])], label="step", categories={"drafted": "#c8f7c5"}
    )
    assert cats["categories"] == {"drafted": "#c8f7c5"}


def test_visible_whitespace() -> None:
    assert views.visible_token(" the") == "·the"
    assert views.visible_token("\n") == "↵" and views.visible_token("") == "∅"


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.312, "31.2%"), (0.0042, "0.42%"), (1.814e-4, "1.8e-04"), (None, "n/a"), (float("nan"), "n/a")],
)
def test_probabilities_never_print_with_si_prefixes(p: object, text: str) -> None:
    assert figures.fmt_prob(p) == text


def test_numbers_and_tables() -> None:
    assert figures.fmt_num(2.0712) == "2.071" and figures.fmt_num(1e-7) == "1.00e-07"
    t = figures.table(
        [{"a": np.float32(1.234567), "b": float("nan")}], [("a", "A (bits)"), ("b", "B")], digits=3
    )
    assert t == {"headers": ["A (bits)", "B"], "data": [[1.235, None]]}


def test_plot_component_adds_the_export_config() -> None:
    plot = figures.Plot(label="sweep")
    data = plot.postprocess(
        figures.curves([0, 1], [("p", "y (bits)", [1, 2])], x_label="λ", title="my sweep")
    )
    cfg = json.loads(data.plot)["config"]
    assert cfg["toImageButtonOptions"] == {"format": "svg", "scale": 1, "filename": "my_sweep"}
    assert cfg["displaylogo"] is False


def test_vector_download_lands_in_the_visitors_capped_folder(tmp_path, monkeypatch) -> None:
    """Issue 24: the steering vector file goes through `downloads.folder` (per visitor, capped, removed on leave)."""
    from types import SimpleNamespace

    from headscope.app import downloads
    from headscope.app.steering_views import download_file
    from headscope.steering.vectors import VectorMeta

    monkeypatch.setattr(downloads, "ROOT", tmp_path / "downloads")
    meta = VectorMeta("contrastive", {"name": "gpt2/small"}, {}, (), None, 3, 1.0, "all", "h")
    with downloads.visitor(SimpleNamespace(session_hash="alice")):
        path = download_file(meta, b"blob")
    assert path.endswith("contrastive-gpt2_small-L3.safetensors")
    assert (tmp_path / "downloads" / "alice") in Path(path).parents and Path(path).read_bytes() == b"blob"
    downloads.release(SimpleNamespace(session_hash="alice"))
    assert not Path(path).exists()


def test_control_characters_are_shown_as_their_codes() -> None:
    assert views.visible_token("\x1b[0m") == "\\x1b[0m" and views.visible_token("\x00") == "\\x00"
    assert views.visible_token("\x7f\x85") == "\\x7f\\x85" and views.visible_token("é\t") == "é⇥"
