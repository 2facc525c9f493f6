/* auth: edge authentication for the HTTP ingress, decided offline at every PoP.
 *
 * The one header the ingress (node/http/httpproxy.c) and the operator commands (authadmin.c)
 * include; each concept has its own header, included here:
 *
 *   node/records/user.h    user/<name>                  who may log in, and the session epoch
 *   node/records/apikey.h  apikey/<id:16 hex>           an API key's hash, user, expiry
 *   node/records/rule.h    rule/<resource>/<id:16 hex>  allow/deny by CIDR or path glob
 *   node/records/cidr.h    client addresses and the networks rules name
 *   password.h             argon2id hashes of passwords (blocking: off the event loop)
 *   session.h              session cookies (pms1.) and share links (pmsh1.), signed by the
 *                          mesh key
 *   apikey.h               API key bearer tokens (pmk1.)
 *   rules.h                which rule decides a request
 *   ratelimit.h            login attempts per address and per user
 *
 * The records replicate and are decoded as untrusted bytes (unknown fields skipped); the
 * tokens come from clients and are checked before anything in them is believed. Nothing here
 * does I/O other than store reads, and time is always passed in (Unix ms for anything compared
 * across PoPs). docs/security.md, "Edge authentication", is the threat model and has every
 * token byte by byte.
 *
 * Errors: 0, or -EACCES with a reason in *why (a static string, fit for a log line, not for
 * showing to the client) when the credential is refused, -EINVAL for bad arguments, or
 * another -errno from the store. Passwords, cookies, tokens and secrets are never logged. */
#ifndef POPMESH_NODE_AUTH_AUTH_H
#define POPMESH_NODE_AUTH_AUTH_H

#include "node/auth/apikey.h"
#include "node/auth/password.h"
#include "node/auth/ratelimit.h"
#include "node/auth/rules.h"
#include "node/auth/session.h"
#include "node/records/apikey.h"
#include "node/records/cidr.h"
#include "node/records/rule.h"
#include "node/records/user.h"

#endif
