from __future__ import annotations

import json

import pytest

from mgc.engine import FeatureSpec, SpecError


def test_defaults_match_the_issue():
    spec = FeatureSpec()
    assert (spec.sr, spec.n_fft, spec.hop_length, spec.n_mels) == (22050, 2048, 512, 128)
    assert (spec.fmin, spec.fmax, spec.htk, spec.norm, spec.top_db, spec.n_mfcc) == (
        0.0,
        None,
        False,
        "slaney",
        80.0,
        20,
    )
    assert spec.features == ("logmel", "mfcc") and spec.logmel_dtype == "float16"
    assert spec.frames_per_second == pytest.approx(22050 / 512)


def test_round_trip_through_json_and_stable_hash():
    spec = FeatureSpec(n_mels=64, features=["logmel"], fmax=8000.0)
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.hash == spec.hash
    assert len(spec.hash) == 12
    assert FeatureSpec().hash == FeatureSpec().hash != spec.hash
    assert FeatureSpec().hash == "062da9c7f5dc"  # changing it silently would orphan every store


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sr": 0},
        {"n_fft": 2048.0},
        {"hop_length": -1},
        {"fmax": 20000.0},
        {"fmin": 9000.0, "fmax": 8000.0},
        {"norm": "l2"},
        {"features": ("logmel", "chroma")},
        {"features": ()},
        {"logmel_dtype": "int8"},
        {"n_mfcc": 200},
        {"top_db": -1.0},
    ],
)
def test_bad_fields_raise_spec_error(kwargs):
    with pytest.raises(SpecError):
        FeatureSpec(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SpecError, match="unknown FeatureSpec fields"):
        FeatureSpec.from_dict({**FeatureSpec().to_dict(), "n_chroma": 12})


def test_frame_count_follows_librosa():
    spec = FeatureSpec()
    assert spec.n_frames(22050 * 30) == 1292
    assert spec.n_frames(2048) == 5
