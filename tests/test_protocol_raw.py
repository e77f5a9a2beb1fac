"""The whole protocol walked with a raw DEALER socket and msgpack alone, against docs/protocol.md.

No project code runs on the client side here: this is what a client written in another language
from the document sees. Every field of every reply must be documented in the message's table,
and every documented field that is not marked optional must be there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from .daemon_process import start_daemon

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
TINY = {"size": 40, "iterations": 3, "scales": 1, "early_stop": 0.0}
LONG = {"size": 64, "iterations": 5000, "scales": 1, "early_stop": 0.0}
META = {"width": 40, "height": 32, "channels": 4, "dtype": "u8", "order": "RGBA"}
PIXELS = bytes(range(256)) * (40 * 32 * 4 // 256)


def documented(message: str) -> tuple[set[str], set[str]]:
    """(all, required) field names of ``message``'s table in the document: the rows under
    ``#### MESSAGE fields``; ``name?`` is optional, ``map.key`` a field of a map."""
    text = DOC.read_text()
    match = re.search(rf"^#### {message} fields\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert match, f"docs/protocol.md has no '#### {message} fields' table"
    names = re.findall(r"^\| `([\w.\[\]]+\??)` \|", match.group(1), re.M)
    return {n.rstrip("?") for n in names}, {n for n in names if not n.endswith("?")}


def fields_of(header: dict, nested: tuple[str, ...] = ()) -> set[str]:
    names = set(header)
    for key in nested:
        value = header.get(key)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                suffix = "[]" if isinstance(value, list) else ""
                names |= {f"{key}{suffix}.{k}" for k in item}
    return names


def check_documented(header: dict, nested: tuple[str, ...] = ()) -> None:
    header = {k: v for k, v in header.items() if k != "_frames"}  # (added by Raw.until)
    every, required = documented(header["type"])
    sent = fields_of(header, nested)
    assert sent <= every, f"{header['type']} sends undocumented {sorted(sent - every)}"
    top_required = {r for r in required if "." not in r}
    assert top_required <= sent, f"{header['type']} lacks {sorted(top_required - sent)}"


class Raw:
    """A DEALER socket that speaks msgpack headers plus raw frames."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def send(self, header: dict | bytes, *frames: bytes) -> None:
        data = header if isinstance(header, bytes) else msgpack.packb(header)
        self.socket.send_multipart([data, *frames])

    def receive(self, timeout: float = 30.0) -> tuple[dict, list[bytes]]:
        assert self.socket.poll(int(timeout * 1000)), "no message from the daemon"
        frames = self.socket.recv_multipart()
        return msgpack.unpackb(frames[0]), frames[1:]

    def until(self, kind: str, job: str | None = None, timeout: float = 60.0) -> list[dict]:
        """Messages up to and including the first ``kind`` (for ``job``)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            header, frames = self.receive(deadline - time.monotonic())
            seen.append({**header, "_frames": frames})
            if header["type"] == kind and (job is None or header.get("job") == job):
                return seen

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


@pytest.fixture(scope="module")
def daemon():
    d = start_daemon(None, None, "--max-queue", "10")
    yield d
    d.stop()


@pytest.fixture()
def raw(daemon):
    r = Raw(daemon.endpoint)
    yield r
    r.close()


def test_hello_ping_classes_estimate_status_are_as_documented(raw):
    raw.send({"type": "HELLO", "protocol": 1, "rid": 1})
    welcome, _ = raw.receive()
    assert welcome["type"] == "WELCOME" and welcome["rid"] == 1
    check_documented(welcome, ("model", "limits"))
    assert fields_of(welcome, ("model", "limits")) >= {
        n for n in documented("WELCOME")[1] if "." in n}
    assert set(welcome["params"]) == set(welcome["schema"])
    assert welcome["schema"]["size"]["high"] == welcome["limits"]["max_size"]
    assert "style_blend" not in welcome["schema"]

    raw.send({"type": "PING", "rid": "p"})
    pong, _ = raw.receive()
    assert pong == {"type": "PONG", "rid": "p"}
    check_documented(pong)

    raw.send({"type": "CLASSES", "rid": 2})
    classes, _ = raw.receive()
    check_documented(classes)
    assert classes["model"] == welcome["model"]
    assert all(name.startswith("@") for name in classes["groups"])

    raw.send({"type": "ESTIMATE", "rid": 3, "params": {"size": 64}, "width": 400,
              "height": 300})
    estimate, _ = raw.receive()
    check_documented(estimate)

    raw.send({"type": "STATUS", "rid": 4})
    status, _ = raw.receive()
    check_documented(status, ("stored",))
    assert status["model"] == welcome["model"]


def test_a_job_from_submit_to_ack(raw):
    raw.send({"type": "SUBMIT", "rid": 5, "params": TINY, "image": META, "job": "mine",
              "preview_every": 1, "preview_size": 16}, PIXELS)
    messages = raw.until("RESULT")
    accepted = messages[0]
    assert accepted["type"] == "ACCEPTED" and accepted["rid"] == 5
    assert accepted["client_job"] == "mine" and accepted["position"] == 0  # an idle daemon
    check_documented(accepted)
    progress = [m for m in messages if m["type"] == "PROGRESS"]
    assert [p["iteration"] for p in progress] == [0, 1, 2, 3]
    for p in progress:
        check_documented(p)
        assert "rid" not in p
    assert progress[-1]["preview"]["width"] == 16 and len(progress[-1]["_frames"]) == 1
    result = messages[-1]
    check_documented(result)
    assert len(result["_frames"][0]) == len(PIXELS)
    job = result["job"]

    raw.send({"type": "FETCH", "rid": 6, "job": job})
    fetched, frames = raw.receive()
    assert fetched["rid"] == 6 and frames[0] == result["_frames"][0]
    raw.send({"type": "ACK", "rid": 7, "job": job})
    acked, _ = raw.receive()
    assert acked == {"type": "ACKED", "job": job, "rid": 7}
    check_documented(acked)


def test_a_sees_task_and_a_steering_mask_are_as_documented(raw):
    """task "sees": a RESULT whose picture is the class map, in the image's layout and size;
    a steering mask frame after the image: a render steered there."""
    raw.send({"type": "SUBMIT", "rid": 20, "task": "sees", "params": {"size": 256},
              "image": META}, PIXELS)
    result = raw.until("RESULT")[-1]
    check_documented(result)
    assert result["image"] == META and len(result["_frames"][0]) == len(PIXELS)
    assert result["grid"]["width"] == max(META["width"], META["height"]) or \
        result["grid"]["height"] == max(META["width"], META["height"])
    assert result["sees"] and abs(sum(c["share"] for c in result["sees"]) - 1) < 1e-6
    assert {"index", "name", "share", "probability"} == set(result["sees"][0])
    raw.send({"type": "ACK", "rid": 21, "job": result["job"]})
    raw.until("ACKED")

    mask = bytes([255]) * (META["width"] * META["height"])
    see_mask = {**META, "channels": 1, "order": "A"}
    raw.send({"type": "SUBMIT", "rid": 22, "params": {**TINY, "see": {"castle": 1.0}},
              "image": META, "see_mask": see_mask}, PIXELS, mask)
    messages = raw.until("RESULT")
    assert "see" in messages[-2]["losses"] and messages[-1]["iterations"] == TINY["iterations"]
    raw.send({"type": "ACK", "rid": 23, "job": messages[-1]["job"]})
    raw.until("ACKED")
    raw.send({"type": "SUBMIT", "rid": 27, "params": {**TINY, "see": {"castle": 1.0}},
              "image": META, "see_mask": see_mask}, PIXELS, bytes(len(mask)))
    failed = raw.until("ERROR")[-1]  # the mask reached the render: an empty one is refused
    assert failed["code"] == "bad_params" and "mask is empty" in failed["message"]

    raw.send({"type": "SUBMIT", "rid": 24, "params": TINY, "image": META,
              "see_mask": see_mask}, PIXELS, mask)
    refused, _ = raw.receive()
    assert refused["code"] == "bad_params" and "see" in refused["message"]
    raw.send({"type": "SUBMIT", "rid": 25, "params": {**TINY, "see": {"castle": 1.0}},
              "image": META, "see_mask": {**see_mask, "width": 8}}, PIXELS, mask[:8 * 32])
    refused, _ = raw.receive()
    assert refused["code"] == "bad_image" and "see_mask" in refused["message"]
    raw.send({"type": "SUBMIT", "rid": 26, "task": "paint", "image": META}, PIXELS)
    refused, _ = raw.receive()
    assert refused["code"] == "bad_message" and "task" in refused["message"]


def test_position_counts_the_jobs_ahead_and_cancel_order_is_as_documented(raw):
    jobs = []
    for rid in (10, 11, 12):
        raw.send({"type": "SUBMIT", "rid": rid, "params": LONG, "image": META}, PIXELS)
        accepted = raw.until("ACCEPTED")[-1]
        jobs.append(accepted["job"])
        assert accepted["position"] == rid - 10, "position: the jobs queued or running ahead"
    running, queued, last = jobs

    # A queued job: the reply (with the rid) first, then the job's CANCELLED (no rid).
    raw.send({"type": "CANCEL", "rid": 13, "job": queued})
    reply = raw.until("CANCELLED", queued)[-1]
    assert reply["rid"] == 13 and reply["state"] == "cancelled"
    check_documented(reply)
    event = raw.until("CANCELLED", queued)[-1]
    assert "rid" not in event and event["reason"] == "request"
    check_documented(event)

    # A running job: "cancelling", and its CANCELLED once the worker has stopped.
    raw.send({"type": "CANCEL", "rid": 14, "job": running})
    reply = raw.until("CANCELLED", running)[-1]
    assert reply["rid"] == 14 and reply["state"] == "cancelling"
    event = raw.until("CANCELLED", running)[-1]
    assert "rid" not in event and event["reason"] == "request"

    deadline = time.monotonic() + 10  # it starts when the others are cancelled
    while True:
        raw.send({"type": "STATUS", "rid": 15})
        status = raw.until("STATUS_REPLY")[-1]
        if status["running"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["running"][0]["job"] == last
    check_documented(status, ("stored", "running"))
    raw.send({"type": "CANCEL", "rid": 16, "job": last})
    assert raw.until("CANCELLED", last)[-1]["state"] == "cancelling"
    assert raw.until("CANCELLED", last)[-1]["reason"] == "request"
    # Cancelling again: the reply says what it was, and no second event follows.
    raw.send({"type": "CANCEL", "rid": 17, "job": queued})
    messages = raw.until("CANCELLED", queued)
    assert messages[-1]["rid"] == 17 and messages[-1]["state"] == "cancelled"
    raw.send({"type": "PING", "rid": 18})
    tail = raw.until("PONG")
    assert [m["type"] for m in tail] == ["PONG"], tail


def test_every_refusal_carries_the_rid_and_a_sentence(raw):
    cases = [
        ({"rid": 20, "job": "x"}, "bad_message", "no 'type'"),
        ({"type": "PING", "rid": 1.5}, "bad_message", "integer or a string"),
        ({"type": "FROB", "rid": 21}, "unknown_type", "unknown message type"),
        ({"type": "HELLO", "rid": 22, "protocol": 0}, "version_mismatch", "protocol"),
        ({"type": "SUBMIT", "rid": 23, "image": META, "params": {"preview_every": 5}},
         "bad_params", "unknown parameter"),
        ({"type": "SUBMIT", "rid": 24, "image": META, "params": {"style_blend": [1]}},
         "bad_params", "unknown parameter"),
        ({"type": "SUBMIT", "rid": 25, "image": META, "params": {"init": "image"}},
         "bad_params", "init"),
        ({"type": "CANCEL", "rid": 26, "job": "nope"}, "unknown_job", "no job"),
        ({"type": "FETCH", "rid": 27, "job": 3}, "bad_message", "job id"),
    ]
    for header, code, words in cases:
        raw.send(header, PIXELS)
        reply, _ = raw.receive()
        assert reply["type"] == "ERROR" and reply["code"] == code, (header, reply)
        assert reply["rid"] == header["rid"], (header, reply)
        assert words in reply["message"], (header, reply)
        check_documented(reply)
    # A header over 1 MiB is not unpacked, but its rid is still read and echoed.
    raw.send(msgpack.packb({"rid": 28, "type": "PING", "pad": "x" * (1 << 20)}))
    reply, _ = raw.receive()
    assert (reply["code"], reply["rid"]) == ("too_large", 28)
    raw.send(b"\xc1 not msgpack")
    reply, _ = raw.receive()
    assert reply["code"] == "bad_message" and "rid" not in reply


BUSY_CLIENT = """
import sys, time, msgpack, zmq
socket = zmq.Context().socket(zmq.DEALER)
socket.connect(sys.argv[1])
meta = {"width": 40, "height": 32, "channels": 4, "dtype": "u8", "order": "RGBA"}
params = {"size": 40, "iterations": int(sys.argv[2]), "scales": 1, "early_stop": 0.0}
socket.send_multipart([msgpack.packb({"type": "SUBMIT", "params": params, "image": meta}),
                       bytes(40 * 32 * 4)])
print(msgpack.unpackb(socket.recv_multipart()[0])["job"], flush=True)
if len(sys.argv) > 4:  # read one message, then end: the process's socket closes with it
    socket.recv_multipart()
    sys.exit()
time.sleep(float(sys.argv[3]))  # busy: sends nothing, reads nothing
while True:
    header = msgpack.unpackb(socket.recv_multipart()[0])
    if header["type"] != "PROGRESS":
        print(header["type"], header.get("reason", ""), flush=True)
        break
"""


def test_a_client_busy_for_30_s_still_gets_its_result(daemon):
    """A script that blocks (encoding an image, a debugger) keeps its job: only a closed
    connection cancels it. 300 iterations with PROGRESS after each fill no pipe either."""
    child = subprocess.run([sys.executable, "-c", BUSY_CLIENT, daemon.endpoint, "300", "30"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[1] == "RESULT ", child.stdout


def test_a_killed_or_closed_client_has_its_job_cancelled_within_2_s(daemon, raw):
    for how in ("kill", "close"):
        child = subprocess.Popen(
            [sys.executable, "-c", BUSY_CLIENT, daemon.endpoint, "5000", "600",
             *(["close"] if how == "close" else [])], stdout=subprocess.PIPE, text=True)
        job = child.stdout.readline().strip()
        deadline = time.monotonic() + 30
        while child.poll() is None:  # "close" ends once its job has started
            raw.send({"type": "STATUS"})
            status = raw.until("STATUS_REPLY")[-1]
            if any(j["job"] == job for j in status["running"]):
                break
            assert time.monotonic() < deadline
        if how == "kill":
            child.kill()
        child.wait(30)
        gone = time.monotonic()
        while True:
            raw.send({"type": "STATUS"})
            status = raw.until("STATUS_REPLY")[-1]
            if not any(j["job"] == job for j in status["running"]):
                break
            assert time.monotonic() - gone < 2.0, f"{how}: job still running 2 s later"
            time.sleep(0.05)
        raw.send({"type": "FETCH", "job": job})
        assert "was cancelled" in raw.until("ERROR")[-1]["message"]
    assert daemon.log.read_text().count("(client_gone)") >= 2
