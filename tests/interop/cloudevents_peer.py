#!/usr/bin/env python3
"""An interop peer for tests/interop.rs: the Python CloudEvents SDK (PyPI
`cloudevents`, installed by scripts/setup), which Ferry did not write.

Each command reads one JSON document on stdin and prints one on stdout;
bytes travel as base64. The SDK's two APIs are both used, as real clients
use them: the legacy one (`cloudevents.v1`, which sends header values
without percent-encoding) and the current one (`cloudevents.core`).

  send      {"url", "api": "legacy"|"core", "mode": "binary"|"structured"|"batch",
             "events": [{"attributes", "data"}]}   -> [[status, body], ...]
  decode    {"headers": {name: value}, "body"}     -> {"attributes", "data"}
  kafka-decode {"headers": [[name, b64]], "key", "value"} -> {"attributes", "data"}
  kafka-encode {"mode", "event": {"attributes", "data"}} -> {"headers", "key", "value"}
  oversized {"url", "bytes", "times"}              -> [[status, body] or [null, error], ...]
"""

import base64
import datetime
import http.client
import json
import sys
from urllib.parse import urlsplit

from cloudevents.core.bindings import http as core_http
from cloudevents.core.bindings import kafka as core_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CoreEvent
from cloudevents.v1 import conversion as legacy_conversion
from cloudevents.v1.http import CloudEvent as LegacyEvent
from cloudevents.v1.http import to_binary as legacy_binary
from cloudevents.v1.http import to_structured as legacy_structured

FORMAT = JSONFormat()


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text) if text is not None else None


def post(url, headers, body):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    # http.client writes the whole body before reading the answer.
    connection.request("POST", parts.path or "/", body=body, headers=headers)
    response = connection.getresponse()
    text = response.read().decode("utf-8", "replace")
    connection.close()
    return [response.status, text]


def core_event(spec):
    return CoreEvent(dict(spec["attributes"]), spec.get("data"))


def encode(api, mode, spec):
    if api == "legacy":
        event = LegacyEvent(dict(spec["attributes"]), spec.get("data"))
        if mode == "binary":
            return legacy_binary(event)
        return legacy_structured(event)
    event = core_event(spec)
    message = (core_http.to_binary if mode == "binary" else core_http.to_structured)(event, FORMAT)
    return message.headers, message.body


def send(request):
    api, mode, url = request["api"], request["mode"], request["url"]
    if mode == "batch":
        if api == "legacy":
            items = [
                legacy_conversion.to_json(LegacyEvent(dict(e["attributes"]), e.get("data")))
                for e in request["events"]
            ]
        else:
            items = [FORMAT.write(core_event(e)) for e in request["events"]]
        body = b"[" + b",".join(items) + b"]"
        headers = {"content-type": "application/cloudevents-batch+json"}
        return [post(url, headers, body)]
    return [post(url, *encode(api, mode, e)) for e in request["events"]]


def described(event):
    attributes = {}
    for name, value in event.get_attributes().items():
        if isinstance(value, datetime.datetime):
            value = value.isoformat()
        attributes[name] = value
    data = event.get_data()
    if isinstance(data, bytes):
        data = {"base64": b64(data)}
    return {"attributes": attributes, "data": data}


def decode(request):
    message = core_http.HTTPMessage(
        headers=request["headers"], body=unb64(request["body"]) or b""
    )
    return described(core_http.from_http(message, FORMAT))


def kafka_decode(request):
    headers = {name: unb64(value) for name, value in request["headers"]}
    message = core_kafka.KafkaMessage(
        headers=headers, key=request.get("key"), value=unb64(request["value"]) or b""
    )
    return described(core_kafka.from_kafka(message, FORMAT))


def kafka_encode(request):
    event = core_event(request["event"])
    convert = core_kafka.to_binary if request["mode"] == "binary" else core_kafka.to_structured
    message = convert(event, FORMAT)
    key = message.key.decode() if isinstance(message.key, bytes) else message.key
    return {
        "headers": [[name, b64(value)] for name, value in message.headers.items()],
        "key": key,
        "value": b64(message.value),
    }


def oversized(request):
    """Posts an event whose body is larger than the receiver takes, as
    http.client does it: the whole body written before the answer is read."""
    spec = {"attributes": {"id": "big", "source": "/python/sdk", "type": "big"},
            "data": "x" * request["bytes"]}
    answers = []
    for _ in range(request["times"]):
        try:
            answers.append(post(request["url"], *encode("core", "binary", spec)))
        except OSError as error:
            answers.append([None, repr(error)])
    return answers


COMMANDS = {
    "oversized": oversized,
    "send": send,
    "decode": decode,
    "kafka-decode": kafka_decode,
    "kafka-encode": kafka_encode,
}

if __name__ == "__main__":
    json.dump(COMMANDS[sys.argv[1]](json.load(sys.stdin)), sys.stdout)
