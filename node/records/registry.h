/* registry: the replicated member and token records, as stored in the store.
 *
 *   node/<id:16 hex>                 {name, region, addr, curve_pk, sign_pk, role, joined_ms,
 *                                     removed, [tunnel_addr], [public4], [public6],
 *                                     [lat_udeg, lon_udeg], [dns_addr], [draining], [site]}
 *   token/<id:16 hex>                {role, expires_ms, uses_max, created_ms, created_by,
 *                                     join_pk, revoked, site?, site_token?}
 *   tokenuse/<token id>/<node id>    {name, at_ms}
 *   site/<name>                      {name, created_ms, created_by, token_id, removed}
 *
 * A site token (meshctl site add) carries the name of the site it enrolls in `site`; the
 * field is absent on every other token, and on records written before it existed, which
 * decode with site = "". A site/ record is what makes a site name enrollable: a JOIN with
 * role site is admitted only for a name whose site/ record exists and is not removed.
 *
 * Connector replicas: a site may have several site nodes, each with its own key. Node names
 * stay unique, so a replica's node record names its site in `site`, written only when it
 * differs from the node's name: the first connector of site S is the node named S without the
 * field (byte for byte what earlier versions wrote), later ones are named S-2, S-3, ... with
 * site = S (reg_node_site). A token minted for one more replica of an existing site
 * (meshctl site token) carries `site_token`, the id of the token the site was added with: JOIN
 * accepts the site's own token or one whose site_token names it, so a token of an earlier
 * incarnation of the name (removed and added again) enrolls nothing.
 *
 * Values are msgpack maps with string keys, so fields can be added later; decoders skip
 * fields they do not know and refuse records missing a field they need. Records come from
 * other nodes through replication, so they are decoded as untrusted input. A node's record
 * is never deleted: removal sets removed=true, so every PoP keeps refusing its key even after
 * tombstones are collected. */
#ifndef POPMESH_NODE_RECORDS_REGISTRY_H
#define POPMESH_NODE_RECORDS_REGISTRY_H

#include "node/nodecfg.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REG_NODE_PREFIX     "node/"
#define REG_TOKEN_PREFIX    "token/"
#define REG_TOKENUSE_PREFIX "tokenuse/"
#define REG_SITE_PREFIX     "site/"
#define REG_SITE_KEY_MAX    (sizeof(REG_SITE_PREFIX) + NODECFG_NAME_MAX) /* with the NUL */
#define REG_ROLE_MAX        15 /* bytes of a role's name on the wire and in the store */
#define REG_PUBLIC4_MAX     15 /* bytes of "255.255.255.255" */
#define REG_PUBLIC6_MAX     45 /* bytes of an IPv6 address's text (INET6_ADDRSTRLEN - 1) */

/* What a node is in the mesh. Compared as an enum in code; the wire (JOIN, tokens) and the
 * stored records keep the names "pop" and "site", so nothing on disk or on the wire changed
 * when it became an enum: convert at the boundary with these two functions. */
enum node_role {
    ROLE_POP,  /* a PoP: a member of the mesh (SWIM, gossip, ingress, relays) */
    ROLE_SITE, /* a site: dials PoPs for tunnels; not a member of the PoP mesh */
};
/* "pop" or "site"; "?" for a value outside the enum. Static storage. */
const char *node_role_name(enum node_role r);
/* Parses the len bytes at s (no NUL needed): 0, or -EINVAL for anything but "pop" or "site". */
int node_role_parse(const char *s, size_t len, enum node_role *out);

typedef struct reg_node {
    uint64_t id;
    char name[NODECFG_NAME_MAX + 1];
    char region[NODECFG_NAME_MAX + 1];
    char addr[NODECFG_ADDR_MAX + 1];
    uint8_t curve_pk[32];
    uint8_t sign_pk[32];
    enum node_role role;
    uint64_t joined_ms;
    bool removed;
    char tunnel_addr[NODECFG_ADDR_MAX + 1]; /* PoPs: "host:port" sites and PoPs dial for
                                             * tunnels; "" = none (optional field) */
    /* DNS steering (node/dns), all optional and written only when set, so a record without
     * them is byte for byte what earlier versions wrote and older readers skip them. */
    char public4[REG_PUBLIC4_MAX + 1]; /* IPv4 address clients reach this PoP at; "" = none */
    char public6[REG_PUBLIC6_MAX + 1]; /* IPv6 address, the same; "" = none */
    bool has_loc;                      /* --location given */
    double lat, lon;                   /* degrees (microdegrees on the wire: lat_udeg, lon_udeg) */
    char dns_addr[NODECFG_ADDR_MAX + 1]; /* "host:port" of its DNS listener; "" = no DNS */
    bool draining;                       /* meshctl node drain: no new answers point here */
    /* Sites: the site this node serves when it is not its name (a connector replica); "" =
     * the name is the site. Read it through reg_node_site. */
    char site[NODECFG_NAME_MAX + 1];
    /* PoPs: it takes no inbound connections (popd --no-inbound: behind a firewall); members
     * reach it on the connections it opens (node/membership/meshnet.h). Optional, written
     * only when set. */
    bool no_inbound;
    /* PoPs: labels (popd --label), optional, written only when there are some. Its region
     * counts as a label too: read through reg_node_has_label. */
    char labels[NODECFG_LABELS_MAX][NODECFG_NAME_MAX + 1];
    unsigned nlabels;
    /* PoPs: it relays sealed streams (tunnel/seal.h: it carries the OPEN's seal field on and
     * their records whole). Optional, written only when set; an ingress seals a stream only
     * when every PoP on its path says so. */
    bool seal;
} reg_node_t;

typedef struct reg_token {
    uint64_t id;
    enum node_role role; /* the role of the node the token enrolls */
    uint64_t expires_ms;
    uint64_t uses_max; /* 0 = unlimited */
    uint64_t created_ms;
    char created_by[NODECFG_NAME_MAX + 1];
    uint8_t join_pk[32];
    bool revoked;
    char site[NODECFG_NAME_MAX + 1]; /* the site a site token enrolls; "" = not bound */
    /* A replica token: the id of the token its site was added with (site/<name>'s
     * token_id); 0 = none. */
    uint64_t site_token;
    /* The key hierarchy (nodecert.h): the capabilities a PoP enrolled with this token gets in
     * its certificate (0 = every one, as before capabilities existed), and the minting PoP's
     * id and Ed25519 signature over the token's fields (reg_token_sign). A mesh with a root
     * admits joins only with a signed token whose minter's certificate holds invite. All
     * optional: a record without them is byte for byte what earlier versions wrote. */
    uint32_t caps;
    uint64_t minter;
    bool has_sig;
    uint8_t sig[64];
} reg_token_t;

typedef struct reg_site {
    char name[NODECFG_NAME_MAX + 1];
    uint64_t created_ms; /* Unix ms */
    char created_by[NODECFG_NAME_MAX + 1];
    uint64_t token_id; /* the site token minted with it */
    bool removed;
} reg_site_t;

/* Keys. out must hold at least 64 bytes. */
void reg_node_key(uint64_t id, char *out, size_t len);
void reg_token_key(uint64_t id, char *out, size_t len);
void reg_tokenuse_key(uint64_t token_id, uint64_t node_id, char *out, size_t len);

void reg_node_pack(msgpack_packer *pk, const reg_node_t *n);
/* True when n carries label (one of its labels, or its region). */
bool reg_node_has_label(const reg_node_t *n, const char *label);

/* The site a site node serves: its site field, or its name when that is empty. Borrowed from
 * n. Meaningless for a PoP. */
const char *reg_node_site(const reg_node_t *n);
/* A public address of a PoP: an IPv4 (family AF_INET) or IPv6 (AF_INET6) address, not the
 * wildcard. 0 or -EINVAL. */
int reg_check_public_ip(const char *s, int family);
/* Decodes a node record; id comes from the key. 0 or -EBADMSG (with why). Also checks that
 * the key's id is the id of curve_pk, so a record cannot bind a key to another node's id. */
int reg_node_parse(const uint8_t *buf, size_t len, uint64_t id, reg_node_t *n, const char **why);
/* Parses the id out of "node/<16 hex>"; 0 or -EINVAL. */
int reg_node_key_id(const char *key, size_t klen, uint64_t *id);

void reg_token_pack(msgpack_packer *pk, const reg_token_t *t);
int reg_token_parse(const uint8_t *buf, size_t len, uint64_t id, reg_token_t *t, const char **why);

/* Signs t (sets minter and sig) with the minting node's id and 64-byte Ed25519 secret key. */
void reg_token_sign(reg_token_t *t, uint64_t minter, const uint8_t sign_sk[64]);
/* True when t carries a signature by pk (the minter's certified key). */
bool reg_token_sig_ok(const reg_token_t *t, const uint8_t pk[32]);

void reg_tokenuse_pack(msgpack_packer *pk, const char *name, uint64_t at_ms);

/* "site/<name>" into out (REG_SITE_KEY_MAX bytes suffice); 0, or -EINVAL if name is not a
 * valid name or the key does not fit in len. */
int reg_site_key(const char *name, char *out, size_t len);
void reg_site_pack(msgpack_packer *pk, const reg_site_t *s);
/* Decodes a site record stored under site/<name>: 0 or -EBADMSG (with why). The record's
 * name must be a valid name and equal name (the key's). */
int reg_site_parse(const uint8_t *buf, size_t len, const char *name, reg_site_t *s,
                   const char **why);

#endif
