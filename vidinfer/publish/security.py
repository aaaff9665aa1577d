"""CurveZMQ on the publisher itself, and key generation (`vidinfer keys`).

A publisher with ``curve_server_secret_key`` and ``curve_clients`` accepts only subscribers that
speak CurveZMQ with a key whose public certificate is in ``curve_clients``; any other subscriber
connects at the TCP level and receives nothing. Key files are `zmq.auth.create_certificates`
files: ``NAME.key`` (public, give it away) and ``NAME.key_secret`` (keep it private).
"""

from __future__ import annotations

import os
from pathlib import Path

from vidinfer.errors import ConfigError
from vidinfer.publish.proxy import CurveServer, load_curve_server

__all__ = ["load_publisher_curve", "create_keys"]


def load_publisher_curve(secret_file: Path, clients_dir: Path, sink: str = "zmq") -> CurveServer:
    """The publisher's own key pair and its allowed clients; `ConfigError` naming the key if unusable."""
    return load_curve_server(secret_file, clients_dir, f"sink {sink!r}: key 'curve_server_secret_key'",
                             f"sink {sink!r}: key 'curve_clients'", "subscriber", "vidinfer keys")


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
