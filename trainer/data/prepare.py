"""Prepare a TFDS dataset exactly once per data dir, however many jobs start at the same time,
and fail in seconds (not after TFDS's minutes of download retries) when it cannot be downloaded."""

from __future__ import annotations

import os
import socket

import filelock

from trainer.errors import ConfigError, DataUnavailable

# TFDS serves prepared datasets from this mirror and most source files from Google storage too;
# one TCP connect tells "offline" apart in seconds, where TFDS itself retries for minutes.
# TRAINER_NETWORK_PROBE=host:port probes another address (a proxy; the tests' closed local port).
_PROBE_HOST = ("storage.googleapis.com", 443)
_PROBE_ENV = "TRAINER_NETWORK_PROBE"
_PROBE_TIMEOUT_S = 3.0


def probe_address() -> tuple[str, int]:
    value = os.environ.get(_PROBE_ENV)
    if not value:
        return _PROBE_HOST
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{_PROBE_ENV} must be host:port, the address whose TCP connection tells that the"
                          f" network is reachable. Received: {_PROBE_ENV}={value}")
    return host, int(port)


def network_reachable() -> bool:
    try:
        with socket.create_connection(probe_address(), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def unavailable(name: str, data_dir: str, why: str) -> DataUnavailable:
    return DataUnavailable(
        f"data.name={name} is not prepared in {data_dir} and {why}. To proceed: prepare it once on a"
        f" machine with network (python -m trainer data=tfds data.name={name} data.data_dir=<dir>),"
        f" point data.data_dir at a prepared copy, or use the offline data=digits."
    )


def lock_path(data_dir_root: str, name: str) -> str:
    return os.path.join(data_dir_root, f".{name.replace('/', '__').replace(':', '_')}.prepare.lock")


def prepared_builder(make_builder, *, name: str, download: bool):
    """`make_builder()` -> a TFDS builder whose data is prepared. Concurrent callers wait on a lock
    file in the data dir; the first prepares, the rest find it prepared."""
    builder = make_builder()
    if builder.is_prepared():
        return builder
    os.makedirs(builder.data_dir_root, exist_ok=True)
    with filelock.FileLock(lock_path(builder.data_dir_root, name)):
        # Rebuilt under the lock: another job may have finished preparing while this one waited,
        # and a builder made before that still describes the unprepared state.
        builder = make_builder()
        if builder.is_prepared():
            return builder
        if _needs_network(builder) and not download:
            raise unavailable(name, builder.data_dir_root, "data.download=false forbids downloading it")
        if _needs_network(builder) and not network_reachable():
            raise unavailable(name, builder.data_dir_root,
                              f"the network is unreachable (no connection to {probe_address()[0]})")
        try:
            builder.download_and_prepare()
        except (OSError, AssertionError) as err:
            # A network failure (requests' ConnectionError is an OSError) or a manual download TFDS
            # asks for (an AssertionError naming the manual dir): the first line of its message says which.
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise unavailable(name, builder.data_dir_root, f"preparing it failed: {first.strip()}") from err
    return make_builder()


def _needs_network(builder) -> bool:
    # Builders that generate their data locally (the bundled digits) declare no download URLs.
    return not getattr(builder, "OFFLINE", False)
