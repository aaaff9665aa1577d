"""Sharding: which streams of a pipeline this process analyses.

N processes (for example the pods of a Kubernetes StatefulSet) run the same pipeline file with
``shard = {index = i, count = N}``; each takes only its share of the stream list. The share is
decided by rendezvous (highest-random-weight) hashing of the stream id: every shard index gets a
weight ``blake2b(index, stream_id)`` and the stream goes to the index with the highest weight.

* Every stream lands in exactly one shard, and every process computes the same answer without
  talking to the others (the hash is stable across processes, machines and Python versions;
  Python's own ``hash()`` is salted per process and would not be).
* Adding or removing a stream moves no other stream: a stream's shard depends only on its own id
  and the shard count.
* Going from N to N+1 shards moves only the streams that the new shard wins (about 1/(N+1) of
  them); the others stay where they were.

Where the shard comes from, first match wins: ``vidinfer run --shard-index I --shard-count N``;
the environment ``VIDINFER_SHARD_INDEX`` / ``VIDINFER_SHARD_COUNT``; the pipeline file's
``[shard]`` table. The index ``ordinal`` (flag or environment) means the trailing number of the
host name, which in a StatefulSet is the pod's ordinal (``vidinfer-2`` is shard 2).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from typing import Callable, Mapping, Sequence, TypeVar

from vidinfer.errors import ConfigError

__all__ = ["shard_of", "select_streams", "resolve_shard", "ordinal_from_hostname", "ENV_INDEX", "ENV_COUNT"]

ENV_INDEX = "VIDINFER_SHARD_INDEX"
ENV_COUNT = "VIDINFER_SHARD_COUNT"
ORDINAL = "ordinal"

T = TypeVar("T")


def _weight(stream_id: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}\x00{stream_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(stream_id: str, count: int) -> int:
    """The shard (0 .. count-1) that analyses ``stream_id`` when there are ``count`` shards."""
    if count < 1:
        raise ValueError(f"the shard count must be at least 1, got {count}")
    return max(range(count), key=lambda i: (_weight(stream_id, i), i))


def select_streams(streams: Sequence[T], index: int, count: int,
                   key: Callable[[T], str] = lambda s: s.id) -> list[T]:  # type: ignore[attr-defined]
    """The streams (whose ``key`` is the stream id) that shard ``index`` of ``count`` analyses, in order."""
    return [s for s in streams if shard_of(key(s), count) == index]


def ordinal_from_hostname(hostname: str | None = None) -> int:
    """The trailing ``-N`` of the host name: a StatefulSet pod's ordinal (``vidinfer-2`` -> 2)."""
    name = hostname if hostname is not None else os.environ.get("HOSTNAME") or socket.gethostname()
    m = re.search(r"-(\d+)$", name)
    if m is None:
        raise ConfigError(f"shard index 'ordinal' needs a host name ending in -N, like the StatefulSet pod "
                          f"name vidinfer-2, but the host name is {name!r}; give the shard index as a number")
    return int(m.group(1))


def _parse_int(value: str, what: str, example: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a whole number; set it to {example}") from None


def resolve_shard(file_shard: tuple[int, int] | None, index: str | int | None = None,
                  count: str | int | None = None, environ: Mapping[str, str] | None = None,
                  hostname: str | None = None) -> tuple[int, int] | None:
    """(index, count) of this process, or None when it runs every stream.

    ``index``/``count`` are the command-line values (None when not given); ``environ`` defaults to
    ``os.environ``; ``file_shard`` is the pipeline file's ``[shard]``. Each value is taken from the
    first of flag, environment and file that has it. Errors are `ConfigError`s naming the source.
    """
    env = os.environ if environ is None else environ
    file_index, file_count = file_shard if file_shard is not None else (None, None)

    raw_index: str | int | None
    if index is not None:
        raw_index, index_from = index, "--shard-index"
    elif env.get(ENV_INDEX, "").strip():
        raw_index, index_from = env[ENV_INDEX], f"environment variable {ENV_INDEX}"
    else:
        raw_index, index_from = file_index, "shard.index"
    if count is not None:
        raw_count: str | int | None = count
        count_from = "--shard-count"
    elif env.get(ENV_COUNT, "").strip():
        raw_count, count_from = env[ENV_COUNT], f"environment variable {ENV_COUNT}"
    else:
        raw_count, count_from = file_count, "shard.count"

    if raw_index is None and raw_count is None:
        return None
    if raw_count is None:
        raise ConfigError(f"a shard index was given ({index_from}) but no shard count; give the number of "
                          f"shards with --shard-count N, {ENV_COUNT} or shard.count in the pipeline file")
    n = raw_count if isinstance(raw_count, int) else _parse_int(raw_count, count_from, "the number of shards, e.g. 3")
    if n < 1:
        raise ConfigError(f"{count_from} is {n}, but there must be at least 1 shard; set it to the number of shards")
    if n > 10_000:
        raise ConfigError(f"{count_from} is {n}, but there may be at most 10000 shards (each shard is a process with "
                          "its own models; more shards than streams only leave shards idle)")
    if raw_index is None:
        raise ConfigError(f"a shard count was given ({count_from}) but no shard index; give this process's index "
                          f"with --shard-index I, {ENV_INDEX} or shard.index in the pipeline file")
    if isinstance(raw_index, str) and raw_index.strip().lower() == ORDINAL:
        i = ordinal_from_hostname(hostname)
        index_from = f"{index_from} (ordinal of the host name)"
    else:
        i = raw_index if isinstance(raw_index, int) else _parse_int(
            raw_index, index_from, f"this process's shard number from 0 to {n - 1}, or 'ordinal'")
    if not 0 <= i < n:
        raise ConfigError(f"shard index {i} ({index_from}) is out of range for {n} shards ({count_from}); "
                          f"use an index from 0 to {n - 1}")
    return i, n
