"""64 paced streams at once (a short run; tools/load_test.py runs the same for 5 minutes)."""

from vidinfer.testing.load import run_load


def test_64_streams_all_finish_complete_with_bounded_queues():
    result = run_load(streams=64, seconds=8, sample_fps=1.0, sample_every_s=1.0)
    assert result.ended == 64 and result.gaps == 0 and result.dropped == 0
    assert set(result.received.values()) == {result.expected_per_stream} and result.expected_per_stream == 8
    assert result.max_queue_depth <= result.queue_size
