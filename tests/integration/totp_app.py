"""Helpers of totp_identity.sh, written apart from popmesh's C (another implementation of each
thing checked):

    totp_app.py code SECRET_B32 [STEP_OFFSET]   the RFC 6238 code now (hmac + struct)
    totp_app.py absent FILE SECRET_B32          exit 1 if the raw secret is in FILE
    totp_app.py verify JWKS_URL TOKEN AUD       verifies an X-Popmesh-Identity JWT against the
                                                key set at JWKS_URL, with python3-jwt and again
                                                with PyNaCl; prints the claims as JSON
    totp_app.py kids JWKS_URL                   the key ids of the set, one line
"""
import base64
import hashlib
import hmac
import json
import struct
import sys
import time
import urllib.request


def b32(secret):
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def code(secret, offset=0):
    step = int(time.time()) // 30 + offset
    mac = hmac.new(b32(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def verify(url, token, aud):
    import jwt  # python3-jwt (Debian)
    import nacl.signing  # python3-nacl

    keys = fetch(url)["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = [k for k in keys if k["kid"] == kid]
    if not jwk:
        raise SystemExit("no key %s in %s" % (kid, url))
    key = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(jwk[0]))
    claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=aud,
                        options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    # the same signature checked by hand with libsodium's Python binding
    head, payload, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)
    vk = nacl.signing.VerifyKey(base64.urlsafe_b64decode(pad(jwk[0]["x"])))
    vk.verify((head + "." + payload).encode(), base64.urlsafe_b64decode(pad(sig)))
    print(json.dumps(claims, sort_keys=True))


def main():
    cmd = sys.argv[1]
    if cmd == "code":
        print(code(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
    elif cmd == "absent":
        data = open(sys.argv[2], "rb").read()
        sys.exit(1 if b32(sys.argv[3]) in data else 0)
    elif cmd == "verify":
        verify(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "kids":
        print(" ".join(sorted(k["kid"] for k in fetch(sys.argv[2])["keys"])))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
