"""Sharding: every stream in exactly one shard, minimal movement, and where the shard comes from."""

import subprocess
import sys
from pathlib import Path

import pytest

from vidinfer.cli import main
from vidinfer.config import parse_pipeline
from vidinfer.errors import ConfigError
from vidinfer.pipeline import Pipeline
from vidinfer.sharding import resolve_shard, select_streams, shard_of

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"cam-{i:03d}" for i in range(300)]


class _S:
    def __init__(self, id):  # noqa: A002
        self.id = id


def test_every_stream_lands_in_exactly_one_shard_and_shares_are_balanced():
    streams = [_S(i) for i in IDS]
    for n in (1, 2, 3, 7):
        shares = [select_streams(streams, i, n) for i in range(n)]
        ids = [s.id for share in shares for s in share]
        assert sorted(ids) == sorted(IDS)  # each exactly once, none lost
        assert min(len(s) for s in shares) > 0.6 * len(IDS) / n  # no shard starves (300 ids: loose bound)


def test_the_assignment_is_stable_across_processes():
    """A fresh interpreter (another hash salt) computes the same shards: no use of Python's hash()."""
    code = "from vidinfer.sharding import shard_of; print([shard_of(f'cam-{i:03d}', 5) for i in range(300)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == str([shard_of(i, 5) for i in IDS])


def test_adding_or_removing_a_stream_moves_no_other_stream():
    before = {i: shard_of(i, 4) for i in IDS}
    # A stream's shard depends only on its own id: the rest of the list cannot change it.
    streams = [_S(i) for i in IDS]
    for removed in ("cam-000", "cam-150"):
        rest = [s for s in streams if s.id != removed]
        after = {s.id: k for k in range(4) for s in select_streams(rest, k, 4)}
        assert after == {i: k for i, k in before.items() if i != removed}
    added = streams + [_S("cam-new")]
    after = {s.id: k for k in range(4) for s in select_streams(added, k, 4)}
    assert {i: after[i] for i in IDS} == before


def test_growing_the_shard_count_moves_only_what_the_new_shard_takes():
    for n in (2, 3, 8):
        moved = [i for i in IDS if shard_of(i, n) != shard_of(i, n + 1)]
        assert all(shard_of(i, n + 1) == n for i in moved)  # every moved stream went to the new shard
        assert len(moved) < 2 * len(IDS) / (n + 1)  # about 1/(n+1) of them, not a reshuffle
        # Shrinking back moves exactly those streams again, nothing else.
        assert [i for i in IDS if shard_of(i, n + 1) == n] == moved


def test_shard_sources_take_flags_then_environment_then_file():
    assert resolve_shard(None, environ={}) is None
    assert resolve_shard((1, 3), environ={}) == (1, 3)
    env = {"VIDINFER_SHARD_INDEX": "2", "VIDINFER_SHARD_COUNT": "4"}
    assert resolve_shard((1, 3), environ=env) == (2, 4)
    assert resolve_shard((1, 3), index="0", count="2", environ=env) == (0, 2)
    # A StatefulSet pod: the index is the pod's ordinal, read from the host name.
    pod = {"VIDINFER_SHARD_INDEX": "ordinal", "VIDINFER_SHARD_COUNT": "4"}
    assert resolve_shard(None, environ=pod, hostname="vidinfer-shard-3") == (3, 4)
    assert resolve_shard(None, index="ordinal", count="4", environ={}, hostname="web-0") == (0, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(environ={"VIDINFER_SHARD_INDEX": "ordinal", "VIDINFER_SHARD_COUNT": "3"}, hostname="laptop"),
     "shard index 'ordinal' needs a host name ending in -N, like the StatefulSet pod name vidinfer-2, but the host "
     "name is 'laptop'; give the shard index as a number"),
    (dict(environ={"VIDINFER_SHARD_INDEX": "3", "VIDINFER_SHARD_COUNT": "3"}),
     "shard index 3 (environment variable VIDINFER_SHARD_INDEX) is out of range for 3 shards (environment variable "
     "VIDINFER_SHARD_COUNT); use an index from 0 to 2"),
    (dict(environ={"VIDINFER_SHARD_INDEX": "1", "VIDINFER_SHARD_COUNT": "three"}),
     "environment variable VIDINFER_SHARD_COUNT 'three' is not a whole number; set it to the number of shards, e.g. 3"),
    (dict(index="1", environ={}),
     "a shard index was given (--shard-index) but no shard count; give the number of shards with --shard-count N, "
     "VIDINFER_SHARD_COUNT or shard.count in the pipeline file"),
    (dict(count="2", environ={}),
     "a shard count was given (--shard-count) but no shard index; give this process's index with --shard-index I, "
     "VIDINFER_SHARD_INDEX or shard.index in the pipeline file"),
    (dict(index="0", count="0", environ={}),
     "--shard-count is 0, but there must be at least 1 shard; set it to the number of shards"),
])
def test_bad_shard_settings_say_what_to_fix(kwargs, message):
    with pytest.raises(ConfigError) as err:
        resolve_shard(None, **kwargs)
    assert str(err.value) == message


def _pipeline_dict(**extra):
    return {"stages": [{"type": "detect", "model": str(ROOT / "models/shapes/detector.onnx"),
                        "labels_file": str(ROOT / "models/shapes/labels.txt")}],
            "streams": [{"id": i, "url": "x.mp4"} for i in ("cam-a", "cam-b", "cam-c", "cam-e")], **extra}


def test_shard_table_in_the_pipeline_file_selects_the_streams():
    config = parse_pipeline(_pipeline_dict(shard={"index": 0, "count": 3}))
    pipeline = config.build()  # builds, does not run: no stream is opened
    assert [s.stream_id for s in pipeline.sources] == ["cam-b", "cam-c"]
    assert list(pipeline.queues) == list(pipeline.report.streams) == ["cam-b", "cam-c"]
    assert [s.id for s in config.streams] == ["cam-a", "cam-b", "cam-c", "cam-e"]  # the file's list stays whole
    # Selecting again from the selection keeps it (idempotent): shard 0's streams are all shard 0's.
    again = Pipeline(pipeline.sources, config.copy().stages, shard=config.shard, device="cpu")
    assert [s.stream_id for s in again.sources] == ["cam-b", "cam-c"]
    with pytest.raises(ConfigError) as err:
        parse_pipeline(_pipeline_dict(shard={"index": 3, "count": 3}), source="p.toml")
    assert str(err.value) == "p.toml: key 'shard': shard index 3 is out of range for 3 shards; use an index from 0 to 2"


def test_cli_refuses_a_bad_shard_with_one_line_and_exit_code_2(capsys, monkeypatch):
    monkeypatch.delenv("VIDINFER_SHARD_INDEX", raising=False)
    monkeypatch.delenv("VIDINFER_SHARD_COUNT", raising=False)
    code = main(["-q", "run", str(ROOT / "pipelines/brand_impact.toml"), "--shard-index", "5", "--shard-count", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("vidinfer: error: shard index 5 (--shard-index) is out of range for 2 shards (--shard-count); "
                   "use an index from 0 to 1\n")
