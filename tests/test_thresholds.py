"""Accuracy thresholds: defaults from data, ini lines and CLI override them, short names match."""

import pytest

from qclip.expect.thresholds import load_thresholds, threshold_for


def test_defaults_ini_and_cli_in_that_order():
    t = load_thresholds(["bnb-nf4=2.5", "fp16 = 0.2"], [("bnb-nf4", 1.5)])
    assert t["bnb-nf4"] == 1.5 and t["fp16"] == 0.2 and t["bnb-int8"] == 2.0
    assert threshold_for(t, "never-heard-of") == t["default"]


def test_a_short_name_matches_the_quantizer_it_ends():
    t = load_thresholds([], [("nf4", 0.7)])
    assert threshold_for({"nf4": 0.7, "default": 5.0}, "bnb-nf4") == 0.7
    assert threshold_for(t, "bnb-nf4") == t["bnb-nf4"]  # an exact entry wins over a short one
    assert threshold_for({"nf4": 0.7, "default": 5.0}, "bnb-fp4") == 5.0


def test_bad_ini_line_is_an_error():
    with pytest.raises(ValueError, match="QUANTIZER=PP"):
        load_thresholds(["bnb-nf4 2.0"])
