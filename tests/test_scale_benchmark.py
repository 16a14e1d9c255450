"""`python -m benchmarks scale --processes N`: a whole-matrix measurement's figure is the run of median
seconds among N fresh processes, with the largest peak memory of them; a failed run is the result."""
import pytest


def test_whole_matrix_measurements_take_the_median_of_their_processes(monkeypatch, tmp_path):
    scale = pytest.importorskip("benchmarks.scale")
    from benchmarks.scale_report import _processes_text

    runs = iter([{"seconds": 3.0, "peak_rss_mb": 500.0, "digest": "a"},
                 {"seconds": 1.0, "peak_rss_mb": 700.0, "digest": "b"},
                 {"seconds": 2.0, "peak_rss_mb": 600.0, "digest": "c"}])
    monkeypatch.setattr(scale, "_spawn", lambda spec, folder, timeout: next(runs))
    result = scale._median_run({}, tmp_path, 10.0, 3)
    assert result == {"seconds": 2.0, "peak_rss_mb": 700.0, "digest": "c", "processes": 3, "runs_s": "3 1 2"}
    assert "median of 3 fresh processes" in _processes_text([result])
    assert _processes_text([{"seconds": 2.0}]) == ""

    one = {"seconds": 1.5, "peak_rss_mb": 400.0}
    monkeypatch.setattr(scale, "_spawn", lambda spec, folder, timeout: one)
    assert scale._median_run({}, tmp_path, 10.0, 1) is one  # a single run as it came

    failures = iter([{"seconds": 1.0, "peak_rss_mb": 1.0}, {"error": "timed out after 10 s"}])
    monkeypatch.setattr(scale, "_spawn", lambda spec, folder, timeout: next(failures))
    assert scale._median_run({}, tmp_path, 10.0, 3) == {"error": "timed out after 10 s"}
    assert set(scale.WHOLE_OPS) <= {op for ops in scale.OPS.values() for op in ops}
