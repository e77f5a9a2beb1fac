"""At least 10,000 malformed messages: every one gets an ERROR, the daemon stays up, memory flat."""

from __future__ import annotations

import random

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_mirage.client import protocol as P

from .daemon_process import start_daemon

CODES = {P.E_BAD_MESSAGE, P.E_UNKNOWN_TYPE, P.E_VERSION, P.E_BAD_PARAMS, P.E_BAD_IMAGE,
         P.E_TOO_LARGE, P.E_UNKNOWN_JOB, P.E_NOT_FINISHED}
SENT = {"count": 0}

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
image_meta = st.fixed_dictionaries({}, optional={
    "width": values | st.integers(-5, 5000), "height": values | st.integers(-5, 5000),
    "channels": values | st.sampled_from([1, 3, 4, 5]),
    "dtype": values | st.sampled_from(["u8", "u16", "f32", "i8"]),
    "order": values | st.sampled_from(["RGBA", "BGRA", "RGB", "ABGR"])})
headers = st.fixed_dictionaries(
    {"type": st.sampled_from([t for t in P.REQUESTS if t != P.SHUTDOWN] + ["RESULT", ""])
             | values},
    optional={"rid": values, "job": values, "protocol": values, "params": values,
              "image": image_meta | values, "mask": image_meta | values, "detach": values,
              "preview_every": values, "preview_size": values, "extra": values})


@pytest.fixture(scope="module")
def fuzz():
    daemon = start_daemon()
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    yield daemon, sock
    sock.close()
    context.term()
    daemon.stop()


def exchange(sock: zmq.Socket, frames: list[bytes]) -> dict:
    sock.send_multipart(frames)
    SENT["count"] += 1
    assert sock.poll(5000), "the daemon stopped answering"
    reply = msgpack.unpackb(sock.recv_multipart()[0])
    if reply["type"] == P.ACCEPTED:  # a fuzzed message that happened to be valid
        sock.send_multipart([P.pack({"type": P.CANCEL, "job": reply["job"]})])
        assert sock.poll(5000)
        sock.recv_multipart()
        return reply
    if reply["type"] in (P.WELCOME, P.PONG, P.STATUS_REPLY, P.CLASSES_REPLY):
        return reply
    assert reply["type"] == P.ERROR, reply
    assert reply["code"] in CODES, reply
    assert isinstance(reply["message"], str) and len(reply["message"]) > 5
    return reply


def test_random_bytes(fuzz):
    daemon, sock = fuzz
    rng = random.Random(1234)
    for _ in range(1000):  # warm up before the first memory reading
        exchange(sock, [rng.randbytes(rng.randint(0, 300))])
    SENT["rss_before"] = daemon.rss()
    for i in range(4000):
        frames = [rng.randbytes(rng.randint(0, 2000)) for _ in range(rng.randint(1, 4))]
        if i % 500 == 0:  # a large frame now and then
            frames.append(rng.randbytes(4_000_000))
        exchange(sock, frames)


@settings(max_examples=5000, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(header=headers, frames=st.lists(st.binary(max_size=600), max_size=3))
def test_hypothesis_headers(fuzz, header, frames):
    _, sock = fuzz
    try:
        packed = msgpack.packb(header, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        packed = b"\xc1"  # never-used msgpack byte
    exchange(sock, [packed, *frames])


def test_still_answering_and_memory_flat(fuzz):
    daemon, sock = fuzz
    assert SENT["count"] >= 10_000
    assert exchange(sock, [P.pack({"type": P.PING})])["type"] == P.PONG
    hello = exchange(sock, [P.pack({"type": P.HELLO, "protocol": P.PROTOCOL_VERSION})])
    assert hello["type"] == P.WELCOME
    growth = daemon.rss() - SENT["rss_before"]
    assert growth < 30 * 2**20, f"daemon memory grew by {growth / 2**20:.1f} MB"
    assert daemon.process.poll() is None
