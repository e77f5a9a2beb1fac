"""The wire format shared by the daemon and its clients (see docs/protocol.md).

Every message is a ZeroMQ multipart message: one msgpack map (the header) followed by zero or more
raw binary frames (pixels). The header always has ``type``; requests may carry ``rid``, which the
reply echoes, and job messages carry ``job``.

This module needs only the standard library and msgpack (the daemon imports it too).
"""

from __future__ import annotations

import io
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

# Client -> daemon
HELLO = "HELLO"
SUBMIT = "SUBMIT"
CANCEL = "CANCEL"
STATUS = "STATUS"
FETCH = "FETCH"
ACK = "ACK"
PING = "PING"
CLASSES = "CLASSES"
ESTIMATE = "ESTIMATE"
SHUTDOWN = "SHUTDOWN"
# Daemon -> client
WELCOME = "WELCOME"
ACCEPTED = "ACCEPTED"
PROGRESS = "PROGRESS"
RESULT = "RESULT"
CANCELLED = "CANCELLED"
STATUS_REPLY = "STATUS_REPLY"
ACKED = "ACKED"
PONG = "PONG"
CLASSES_REPLY = "CLASSES_REPLY"
ESTIMATE_REPLY = "ESTIMATE_REPLY"
BYE = "BYE"
ERROR = "ERROR"

REQUESTS = (HELLO, SUBMIT, CANCEL, STATUS, FETCH, ACK, PING, CLASSES, ESTIMATE, SHUTDOWN)

# What a SUBMIT asks for: a render, or the map of what the net sees where in the image.
RENDER, SEES = "render", "sees"
TASKS = (RENDER, SEES)

# Stable error codes: clients switch on these, people read the message next to them.
E_BAD_MESSAGE = "bad_message"        # not msgpack, not a map, missing or mistyped fields
E_UNKNOWN_TYPE = "unknown_type"
E_VERSION = "version_mismatch"
E_BAD_PARAMS = "bad_params"
E_BAD_IMAGE = "bad_image"            # meta and pixel frame do not agree
E_TOO_LARGE = "too_large"
E_BUSY = "busy"                      # the queue is full
E_UNKNOWN_JOB = "unknown_job"
E_NOT_FINISHED = "not_finished"
E_RENDER_FAILED = "render_failed"
E_OUT_OF_MEMORY = "out_of_memory"
E_FORBIDDEN = "forbidden"
E_SHUTTING_DOWN = "shutting_down"
E_TIMEOUT = "timeout"                # raised by clients, never sent
E_NO_DAEMON = "no_daemon"            # raised by clients, never sent
E_DAEMON_STOPPED = "daemon_stopped"  # raised by clients: it stopped during a job
E_UNAUTHORIZED = "unauthorized"      # no or a wrong secret on loopback TCP

#: ZeroMQ PLAIN user name on loopback TCP; the password is the connection file's ``secret``.
PLAIN_USER = "neural-mirage"

#: Largest header we unpack; pixels travel in frames, so headers are small.
MAX_HEADER_BYTES = 1 << 20

DTYPES = {"u8": 1, "u16": 2, "f32": 4}
#: The SUBMIT fields that are one-channel masks rather than images.
MASKS = ("mask", "see_mask")
ORDERS = {3: ("RGB", "BGR"), 4: ("RGBA", "BGRA")}


class ProtocolError(Exception):
    """A message that breaks the protocol; ``code`` is one of the E_* codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decode a header with hard limits, so a hostile message cannot exhaust memory."""
    if len(data) > MAX_HEADER_BYTES:
        raise ProtocolError(E_TOO_LARGE, f"the header is {len(data)} bytes; the limit is "
                                         f"{MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_str_len=MAX_HEADER_BYTES,
            max_bin_len=MAX_HEADER_BYTES, max_array_len=100_000, max_map_len=10_000,
            max_ext_len=0)
    except Exception as exc:  # msgpack raises many types for garbage input
        raise ProtocolError(E_BAD_MESSAGE, "the header is not valid msgpack") from exc
    if not isinstance(header, dict):
        raise ProtocolError(E_BAD_MESSAGE, "the header must be a msgpack map")
    rid = header.get("rid")
    if rid is not None and not _is_rid(rid):
        raise ProtocolError(E_BAD_MESSAGE, f"'rid' must be an integer or a string, not "
                                           f"{rid!r:.40}")
    if not isinstance(header.get("type"), str):
        raise ProtocolError(E_BAD_MESSAGE, "the header has no 'type' string")
    return header


def _is_rid(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def read_rid(data: bytes | memoryview) -> Any:
    """The ``rid`` of a header, read even from one that :func:`unpack` refuses (too large, no
    ``type``), so that the ERROR carries it: a client matching replies by rid gets its answer.

    Reads the map key by key and skips values, so a huge value before ``rid`` costs no memory;
    returns None when there is no readable integer, float or string ``rid``.
    """
    try:
        unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, read_size=1 << 16,
                                    max_buffer_size=2 * MAX_HEADER_BYTES)
        for _ in range(min(unpacker.read_map_header(), 10_000)):
            if unpacker.unpack() == "rid":
                rid = unpacker.unpack()
                return rid if _is_rid(rid) or isinstance(rid, float) else None
            unpacker.skip()
    except Exception:  # garbage, or a value too large to skip: no rid to be had
        return None
    return None


def image_meta(width: int, height: int, channels: int = 4, dtype: str = "u8",
               order: str = "RGBA") -> dict[str, Any]:
    """The ``image`` map that describes a pixel frame."""
    return {"width": width, "height": height, "channels": channels, "dtype": dtype,
            "order": order}


def check_image_meta(meta: Any, max_pixels: int, name: str = "image") -> int:
    """Validate an image map; return the byte length its frame must have."""
    if not isinstance(meta, dict):
        raise ProtocolError(E_BAD_IMAGE, f"'{name}' must be a map with width, height, channels, "
                                         "dtype and order")
    width, height = check_size(meta, max_pixels, name, E_BAD_IMAGE)
    channels, dtype, order = meta.get("channels"), meta.get("dtype"), meta.get("order")
    if channels not in ORDERS and not (name in MASKS and channels == 1):
        raise ProtocolError(E_BAD_IMAGE, f"{name}.channels must be 3 or 4")
    if dtype not in DTYPES:
        raise ProtocolError(E_BAD_IMAGE, f"{name}.dtype must be one of {', '.join(DTYPES)}")
    if channels in ORDERS and order not in ORDERS[channels]:
        raise ProtocolError(E_BAD_IMAGE, f"{name}.order must be one of "
                                         f"{', '.join(ORDERS[channels])} for {channels} channels")
    return width * height * channels * DTYPES[dtype]


def check_size(meta: Any, max_pixels: int, name: str,
               code: str = E_BAD_MESSAGE) -> tuple[int, int]:
    """Validate a map's ``width`` and ``height`` (an image, an ``output`` or an area); return
    them. A size that is not a positive whole number is a ``code`` error."""
    if not isinstance(meta, dict):
        raise ProtocolError(code, f"'{name}' must be a map with width and height")
    width, height = meta.get("width"), meta.get("height")
    for key, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ProtocolError(code, f"{name}.{key} must be a positive whole number")
    if width * height > max_pixels:
        raise ProtocolError(E_TOO_LARGE, f"the {name} is {width}x{height}; this daemon takes at "
                                         f"most {max_pixels} pixels")
    return width, height


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": ERROR, "code": code, "message": message, **extra}
