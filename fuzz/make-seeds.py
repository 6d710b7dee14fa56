#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the wire transcripts recorded from the
reference implementation (../../shared/conformance/*.json, or the directory given as argument).

  corpus/connection/seed-NAME   what the recorded client sent (the server's input)
  corpus/decoder/seed-NAME-c2s  the same, behind the decoder target's 2 control bytes
  corpus/decoder/seed-NAME-s2c  what the recorded server sent, likewise
"""
import base64, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "conformance")

def raw(messages):
    out = b""
    for m in messages:
        out += m.encode("latin-1") if isinstance(m, str) else base64.b64decode(m["base64"])
    return out

# Decoder control bytes: 0x82 = with version, 4096-byte payload limit; 7 = 8-byte pieces.
CONTROL = bytes([0x82, 7])
for d in ("connection", "decoder"):
    os.makedirs(os.path.join(here, "corpus", d), exist_ok=True)
n = 0
for name in sorted(os.listdir(src)):
    if not name.endswith(".json") or name.startswith("websocket"):
        continue
    t = json.load(open(os.path.join(src, name)))
    stem = name[:-5]
    c2s, s2c = raw(t["client_to_server"]), raw(t["server_to_client"])
    for path, data in [
        (("connection", f"seed-{stem}"), c2s),
        (("decoder", f"seed-{stem}-c2s"), CONTROL + c2s),
        (("decoder", f"seed-{stem}-s2c"), CONTROL + s2c),
    ]:
        with open(os.path.join(here, "corpus", *path), "wb") as f:
            f.write(data)
        n += 1
print(f"wrote {n} seeds from {src}")
