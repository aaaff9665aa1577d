"""CurveZMQ on the publisher itself, key generation (`vidinfer keys`), and the reliable sinks of a
`[publish]` table.

A publisher with ``curve_server_secret_key`` and ``curve_clients`` accepts only subscribers that
speak CurveZMQ with a key whose public certificate is in ``curve_clients``; any other subscriber
connects at the TCP level and receives nothing. Key files are `zmq.auth.create_certificates`
files: ``NAME.key`` (public, give it away) and ``NAME.key_secret`` (keep it private).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vidinfer.errors import ConfigError
from vidinfer.publish.proxy import CurveServer, load_curve_server

__all__ = ["publish_extras", "load_publisher_curve", "create_keys"]


def load_publisher_curve(secret_file: Path, clients_dir: Path) -> CurveServer:
    """The publisher's own key pair and its allowed clients; `ConfigError` naming the key if unusable."""
    return load_curve_server(secret_file, clients_dir, "publish.curve_server_secret_key",
                             "key 'publish.curve_clients'", "subscriber", "vidinfer keys")


def publish_extras(pub: Any) -> tuple[CurveServer | None, list[Any]]:
    """From a `PublishSpec`: the publisher's CurveZMQ server keys (or None) and its reliable sinks."""
    from vidinfer.publish.sinks import FileSink, PushSink

    curve = None
    if pub.curve_server_secret_key is not None and pub.curve_clients is not None:
        curve = load_publisher_curve(pub.curve_server_secret_key, pub.curve_clients)
    sinks: list[Any] = []
    try:
        if pub.reliable_endpoint:
            sinks.append(PushSink(pub.reliable_endpoint, pub.reliable_hwm))
        if pub.file is not None:
            sinks.append(FileSink(pub.file))
    except ConfigError:
        for s in sinks:
            s.close()
        raise
    return curve, sinks


def create_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret into ``directory``; refuses to overwrite an existing pair."""
    import zmq.auth

    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise ConfigError(f"'{public}' already exists; choose another --name or folder (keys are never overwritten)")
    directory.mkdir(parents=True, exist_ok=True)
    pub, sec = zmq.auth.create_certificates(str(directory), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)
