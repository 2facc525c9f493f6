"""What an attacker can make with a copy of a PoP's data directory (tests trust_*.sh).

  trust_forge.py cookie DIR USER EPOCH        a pms2. session signed by DIR's node key
  trust_forge.py legacy-cookie DIR USER EPOCH a pms1. session signed by DIR's mesh.key
  trust_forge.py token DIR SEED_ADDR SEED_CURVE_HEX
      a pmt1. join token signed by DIR's mesh.key, for the seed, and the token/<id> record a
      popd of DIR would write for it (signed by DIR's node key as its minter); prints
      "TOKEN\\nKEY\\nRECORD_HEX"
  trust_forge.py push DIR KEY VALUE ORIGIN SIGN
      a mesh PUSH message (hex, for mesh_send) carrying one store entry for KEY: VALUE is a
      JSON object packed as the record, "-" for a delete, or "edit:SOCKET:FIELD=JSON": the
      record as the popd at control SOCKET holds it with one field changed (so bin fields
      stay bin), ORIGIN the writer's node id in
      hex or "self" (DIR's), SIGN "sign" (with DIR's node key, as docs/security.md's "Signed
      configuration" says) or "none"
  trust_forge.py user NAME PASSWORD [ADMIN]
      a user record's JSON (pwhash an argon2id string made here; "-" as PASSWORD: none)

The formats are docs/security.md's ("Token formats", "The key hierarchy"); nothing here uses
popmesh code, so a test built on it checks the documented wire, not the implementation."""
import base64
import hashlib
import os
import re
import sys
import time

import msgpack
import nacl.bindings
import nacl.signing


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def kv(path):
    return dict(re.findall(r"^([a-z-]+) = (\S+)$", open(path).read(), re.M))


def node_key(d):
    seed = bytes.fromhex(kv(os.path.join(d, "node.key"))["sign-seed"])
    node_id = int(kv(os.path.join(d, "node.pub"))["node-id"], 16)
    return nacl.signing.SigningKey(seed), node_id


def mesh_key(d):
    return nacl.signing.SigningKey(bytes.fromhex(kv(os.path.join(d, "mesh.key"))["mesh-sign-seed"]))


def now_ms():
    return int(time.time() * 1000)


def cookie(d, user, epoch):
    sk, node_id = node_key(d)
    t = now_ms()
    payload = msgpack.packb([2, user, epoch, t, t + 3600_000, "", os.urandom(8), node_id])
    sig = sk.sign(b"popmesh session v2\0" + payload).signature
    return "pms2." + b64(payload + sig)


def legacy_cookie(d, user, epoch):
    sk = mesh_key(d)
    t = now_ms()
    payload = msgpack.packb([1, user, epoch, t, t + 3600_000, "", os.urandom(8)])
    sig = sk.sign(b"popmesh session v1\0" + payload).signature
    return "pms1." + b64(payload + sig)


def token(d, seed_addr, seed_curve_hex):
    msk = mesh_key(d)
    nsk, node_id = node_key(d)
    secret = os.urandom(32)
    jsk = hashlib.blake2b(secret, digest_size=32, key=b"popmesh join key v1").digest()
    join_pk = nacl.bindings.crypto_scalarmult_base(jsk)
    tid = int.from_bytes(hashlib.blake2b(join_pk, digest_size=16).digest()[:8], "big")
    expires = now_ms() + 600_000
    payload = msgpack.packb([1, bytes(msk.verify_key), "pop", expires, secret,
                             [[seed_addr, bytes.fromhex(seed_curve_hex)]]])
    text = "pmt1." + b64(payload + msk.sign(payload).signature)
    signed = b"popmesh tokenrec v1\0" + msgpack.packb(
        [tid, join_pk, "pop", expires, 5, 15, "", 0, node_id])
    rec = msgpack.packb({"role": "pop", "expires_ms": expires, "uses_max": 5,
                         "created_ms": now_ms(), "created_by": "attacker", "join_pk": join_pk,
                         "revoked": False, "caps": 15, "minter": node_id,
                         "sig": nsk.sign(signed).signature})
    return "%s\ntoken/%016x\n%s" % (text, tid, rec.hex())


def push(d, key, value, origin, sign):
    import json
    import struct
    sk, node_id = node_key(d)
    origin = node_id if origin == "self" else int(origin, 16)
    version = now_ms() << 16
    k = key.encode()
    tomb = value == "-"
    if value.startswith("edit:"):
        sock, change = value[5:].rsplit(":", 1)
        field, new = change.split("=", 1)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from ctlclient import Ctl
        st, body = Ctl(sock).call("config.get", {"key": key})
        assert st == 0, (st, body)
        rec = body["value"]
        rec[field] = json.loads(new)
        v = msgpack.packb(rec, use_bin_type=True)
    else:
        v = b"" if tomb else msgpack.packb(json.loads(value))
    signed = (b"popmesh entry v1\0" + struct.pack("<I", len(k)) + k +
              struct.pack("<QQBI", version, origin, 1 if tomb else 0, len(v)) + v)
    fields = [msgpack.packb(k, use_bin_type=True), msgpack.packb(version),
              msgpack.packb(origin), msgpack.packb(tomb), v if not tomb else msgpack.packb(None)]
    if sign == "sign":
        fields.append(msgpack.packb(sk.sign(signed).signature, use_bin_type=True))
    entry = bytes([0x90 | len(fields)]) + b"".join(fields)
    return (bytes([0x93, 1, 34]) + entry).hex()


def user(name, password, admin=False):
    import json
    import nacl.pwhash
    pw = "" if password == "-" else nacl.pwhash.argon2id.str(
        password.encode(), opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE).decode()
    return json.dumps({"name": name, "groups": [], "pwhash": pw, "created_ms": now_ms(),
                       "session_epoch": 1, "removed": False, "admin": admin})


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "cookie":
        print(cookie(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif what == "legacy-cookie":
        print(legacy_cookie(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif what == "token":
        print(token(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif what == "push":
        print(push(*sys.argv[2:7]))
    elif what == "user":
        print(user(sys.argv[2], sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "admin"))
    else:
        sys.exit("unknown: " + what)
