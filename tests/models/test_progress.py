"""Progress of the model commands: every long pass ends on ``done == total`` with a known total (issue 23).

Also what ``evaluate`` used to do silently: lower ``k`` (now in ``k_requested`` and ``note``) and die on a store
without labels (now a ModelError before any work).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mgc.engine.progress import ThrottledReporter
from mgc.models.errors import ModelError
from tests.models.conftest import small_spec


@pytest.fixture(scope="module")
def model_dir(tone_model):
    return tone_model.folder


@pytest.fixture(scope="module")
def wavs(tone_store):
    """Four WAV files of the tone corpus (two classes), the files the store was extracted from."""
    corpus = tone_store.parent / "corpus"
    return sorted(str(p) for p in corpus.glob("tone[01]/*.wav"))[::4]


def collect():
    events = []
    return events, events.append


def last(events, task):
    """The last event of ``task``, checked to be its end with a known total reached."""
    mine = [e for e in events if e.task == task and e.kind != "stage"]
    assert mine, f"no {task} events in {events}"
    assert mine[0].kind == "start" and mine[0].total is not None, mine[0]
    end = mine[-1]
    assert end.kind == "end" and end.total is not None and end.done == end.total, end
    assert all(e.total == end.total for e in mine), mine
    return end


def test_predict_reports_files_and_store_tracks_with_a_total(model_dir, wavs, tone_store):
    from mgc.models import predict

    events, callback = collect()
    results = predict(model_dir, wavs, which="latest", workers=1, progress=callback)
    assert last(events, "predict").total == len(wavs) == len(results)
    events, callback = collect()
    results = predict(model_dir, store=tone_store, which="latest", progress=callback)
    end = last(events, "predict")
    assert end.total == len(results) == 24 and end.unit == "tracks" and end.info["failed"] == 0


def test_predict_to_file_counts_only_the_tracks_left_to_do(model_dir, wavs, tmp_path):
    from mgc.models import predict_to_file

    out = tmp_path / "out.jsonl"
    events, callback = collect()
    predict_to_file(model_dir, out, wavs[:3], which="latest", workers=1, progress=callback)
    assert last(events, "predict").total == 3
    events, callback = collect()
    summary = predict_to_file(model_dir, out, wavs, which="latest", workers=1, progress=callback)
    assert summary["skipped"] == 3 and last(events, "predict").total == len(wavs) - 3


def test_embed_reports_a_total_for_files_and_for_a_store(model_dir, wavs, tone_store, tmp_path):
    from mgc.models import embed

    events, callback = collect()
    embed(model_dir, tmp_path / "files", wavs, which="latest", workers=1, index="none", progress=callback)
    assert last(events, "embed").total == len(wavs)
    events, callback = collect()
    summary = embed(model_dir, tmp_path / "store", store=tone_store, which="latest", index="none", progress=callback)
    assert last(events, "embed").total == summary["written"] == 24
    events, callback = collect()
    from mgc.engine.neighbours import store_precision_at_k

    result = store_precision_at_k(tmp_path / "store", 100, progress=callback)
    assert last(events, "neighbours").total == 24  # searched exactly: the store's vectors, one pass
    assert result["k"] == 23 and result["k_requested"] == 100 and "lowered from 100 to 23" in result["note"]
    assert result["chance"] == pytest.approx(3 * 8 * 7 / (24 * 23))


def test_evaluate_has_a_bar_and_says_why_k_was_lowered(model_dir, tone_store, tmp_path):
    from mgc.models import evaluate

    events, callback = collect()
    metrics = evaluate(
        model_dir, tone_store, split="all", out_dir=tmp_path / "eval", which="latest", precision_k=50, progress=callback
    )
    assert last(events, "evaluate").total == metrics["n_tracks"] == 24
    assert last(events, "neighbours").total == 24
    neighbours = metrics["genre_precision_at_k"]
    assert neighbours["k"] == 23 and neighbours["k_requested"] == 50
    assert neighbours["note"].startswith("k lowered from 50 to 23: there are 24 labelled tracks in the store")
    assert neighbours["chance"] == pytest.approx(3 * 8 * 7 / (24 * 23)) and neighbours["chance"] > 0


def test_report_announces_the_evaluation_and_shows_its_bar(model_dir, tone_store, tmp_path):
    from mgc.models import report

    events, callback = collect()
    report(tone_store, tmp_path / "report", model_dir=model_dir, sample=6, progress=callback)
    last(events, "report")
    stages = [e for e in events if e.kind == "stage" and e.info.get("stage") == "evaluate"]
    assert len(stages) == 1 and "evaluating the model" in stages[0].message
    assert events.index(stages[0]) < events.index(next(e for e in events if e.task == "evaluate"))
    last(events, "evaluate")


def test_genre_precision_notes_a_figure_that_says_nothing():
    from mgc.engine.neighbours import genre_precision_at_k

    vectors = np.eye(3, dtype=np.float32)
    result = genre_precision_at_k(vectors, np.array(["a", "b", "c"]), k=10, pool="tracks in the test split")
    assert (result["k"], result["k_requested"], result["chance"], result["precision"]) == (2, 10, 0.0, 0.0)
    assert "k lowered from 10 to 2: there are 3 tracks in the test split" in result["note"]
    assert "no two of the 3 tracks in the test split share a label" in result["note"]
    result = genre_precision_at_k(np.eye(4, dtype=np.float32), np.array(["a", "a", "b", "b"]), k=3)
    assert result["note"] == "" and result["chance"] == pytest.approx(1 / 3)


def test_evaluate_refuses_a_store_without_labels_before_any_work(model_dir, tone_store, tmp_path):
    from mgc import engine
    from mgc.models import evaluate

    plain = tmp_path / "plain"
    plain.mkdir()
    for path in sorted((tone_store.parent / "corpus").glob("tone*/*.wav"))[:3]:
        shutil.copy(path, plain / path.name)
    engine.extract(plain, tmp_path / "store", small_spec(), workers=1)
    events, callback = collect()
    for split in ("all", "test"):
        with pytest.raises(ModelError, match="has no labelled tracks: evaluation needs labels"):
            evaluate(model_dir, tmp_path / "store", split=split, which="latest", progress=callback)
    assert events == []


def test_throttled_updates_are_spaced_but_start_and_end_always_go_out():
    events, callback = collect()
    report = ThrottledReporter(callback, "t", "tracks", interval=60)
    report("start", 0, 1000)
    for n in range(1, 1001):
        report("update", n, 1000)
    report("end", 1000, 1000)
    assert [e.kind for e in events] == ["start", "end"] and events[-1].done == 1000


def test_the_network_pass_of_evaluate_is_counted_track_by_track(tone_model, tone_store):
    from mgc.engine import FeatureStore
    from mgc.models.inference import counting_tracks

    seen = []
    with counting_tracks(seen.append):
        tone_model.store_outputs(FeatureStore(tone_store), np.arange(24))
    assert seen == list(range(1, 25))
    tone_model.store_outputs(FeatureStore(tone_store), np.arange(3))  # outside the block: not counted
    assert len(seen) == 24
