/* Fuzzes the header checks and rewrites of the reverse proxy (node/http/httphdr.h) and the log
 * escaper (common/logesc.h). Beyond "no crash, no out-of-bounds read", it checks what the
 * proxy relies on:
 *  - a redirect target that is accepted is a same-host path a browser cannot read as another
 *    host (starts with one '/', printable ASCII, no backslash), and normalising it again
 *    gives the same bytes;
 *  - a Cookie header rebuilt without popmesh's cookie holds no such cookie any more (and grows
 *    only by the spaces of its separators);
 *  - an escaped log field is printable ASCII (no newline can forge a line);
 *  - a 101 accepted for a key carries exactly the accept value computed for it.
 *
 * Input: byte 0 chooses the function, the rest is its argument (for the 101 check: the key,
 * then the Upgrade, Connection and Sec-WebSocket-Accept values, separated by '\n'). */
#include "common/logesc.h"
#include "node/http/httphdr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_redirect(const char *s, size_t n)
{
    char out[4 * 1024], again[4 * 1024];
    if (httphdr_redirect_target(s, n, out, sizeof(out)) != 0)
        return;
    size_t len = strlen(out);
    if (len == 0 || out[0] != '/' || (len > 1 && (out[1] == '/' || out[1] == '\\')))
        abort();
    for (size_t i = 0; i < len; i++)
        if (out[i] <= 0x20 || out[i] >= 0x7f || out[i] == '\\')
            abort();
    if (httphdr_redirect_target(out, len, again, sizeof(again)) != 0 || strcmp(out, again) != 0)
        abort();
}

static void check_cookies(const char *s, size_t n)
{
    http_header_t hs[2] = {{"Cookie", 6, s, n}, {"cookie", 6, s, n / 2}};
    http_head_t h = {.request = true, .headers = hs, .nheaders = 2};
    char out[8192];
    const char *v;
    size_t vl;
    int count = httphdr_cookie_find(&h, "popmesh_session", &v, &vl);
    if (count < 0 || count > 2 || (count > 0 && (v < s || v + vl > s + n)))
        abort();
    ssize_t len = httphdr_cookie_without(&h, "popmesh_session", out, sizeof(out));
    if (len < 0)
        return;
    /* Each pair keeps its bytes; a ';' between two may become "; ". */
    if ((size_t)len > 2 * (n + n / 2))
        abort();
    http_header_t again = {"Cookie", 6, out, (size_t)len};
    http_head_t h2 = {.request = true, .headers = &again, .nheaders = 1};
    if (httphdr_cookie_find(&h2, "popmesh_session", &v, &vl) != 0)
        abort();
}

static void check_ws(const char *s, size_t n)
{
    const char *part[4] = {s, "", "", ""};
    size_t plen[4] = {n, 0, 0, 0};
    int k = 0;
    for (size_t i = 0; i < n && k < 3; i++)
        if (s[i] == '\n') {
            plen[k] = (size_t)(s + i - part[k]);
            part[++k] = s + i + 1;
            plen[k] = n - i - 1;
        }
    http_header_t hs[3] = {{"Upgrade", 7, part[1], plen[1]},
                           {"Connection", 10, part[2], plen[2]},
                           {"Sec-WebSocket-Accept", 20, part[3], plen[3]}};
    http_head_t h = {.status = 101, .headers = hs, .nheaders = 3};
    (void)httphdr_ws_key_valid(part[0], plen[0]);
    if (httphdr_ws_check_101(&h, part[0], plen[0]) == NULL) {
        char want[HTTPHDR_WS_ACCEPT_LEN + 1];
        httphdr_ws_accept(part[0], plen[0], want);
        if (plen[3] != HTTPHDR_WS_ACCEPT_LEN || memcmp(part[3], want, plen[3]) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    char out[LOG_ESC_MAX];

    switch (data[0] % 8) {
    case 0:
        check_redirect(s, n);
        break;
    case 1:
        (void)httphdr_host_valid(s, n);
        break;
    case 2:
        check_cookies(s, n);
        break;
    case 3:
        (void)httphdr_set_cookie_is(s, n, "popmesh_session");
        (void)httphdr_is_apikey_auth(s, n);
        break;
    case 4:
        (void)httphdr_reserved_request_name(s, n);
        (void)httphdr_name_is(s, n, "remote-user");
        break;
    case 5: {
        http_header_t hs[2] = {{"Origin", 6, s, n}, {"Sec-Fetch-Site", 14, s, n / 3}};
        http_head_t h = {.request = true, .headers = hs, .nheaders = data[0] & 8 ? 2 : 1};
        h.host = s + n / 2;
        h.host_len = n - n / 2;
        (void)httphdr_cross_site(&h);
        break;
    }
    case 6:
        check_ws(s, n);
        break;
    case 7:
        log_esc(out, sizeof(out), s, n);
        for (const char *p = out; *p; p++)
            if (*p < 0x20 || *p >= 0x7f)
                abort();
        break;
    }
    return 0;
}
