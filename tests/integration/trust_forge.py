"""What an attacker can make with a copy of a PoP's data directory (tests trust_*.sh).

  trust_forge.py cookie DIR USER EPOCH        a pms2. session signed by DIR's node key
  trust_forge.py legacy-cookie DIR USER EPOCH a pms1. session signed by DIR's mesh.key
  trust_forge.py token DIR SEED_ADDR SEED_CURVE_HEX
      a pmt1. join token signed by DIR's mesh.key, for the seed, and the token/<id> record a
      popd of DIR would write for it (signed by DIR's node key as its minter); prints
      "TOKEN\\nKEY\\nRECORD_HEX"

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


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "cookie":
        print(cookie(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif what == "legacy-cookie":
        print(legacy_cookie(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif what == "token":
        print(token(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        sys.exit("unknown: " + what)
