/* Client-port TLS: the contexts behind --cert-file, --key-file,
 * --trusted-ca-file and --client-cert-auth, and certificate reload (SIGHUP)
 * for both ports. Contracts in node.h. */
#include <stdio.h>
#include <string.h>

#include "node/node_int.h"
#include "stcache/errors.h"
#include "tls/tls.h"
#include "util/trace.h"

#define MOD "node"

int node_client_tls_init(struct node *n)
{
    const struct node_config *cfg = &n->cfg;
    if (!cfg->cert_file[0]) return 0;
    struct st_tls_files f = {cfg->cert_file, cfg->key_file,
                             cfg->trusted_ca_file[0] ? cfg->trusted_ca_file : NULL};
    /* Without --client-cert-auth a certificate is still asked for when a CA
     * is given, and its name passed on when it verifies (a client without
     * one is served). */
    enum st_tls_verify v = cfg->client_cert_auth     ? ST_TLS_VERIFY_REQUIRE
                           : cfg->trusted_ca_file[0] ? ST_TLS_VERIFY_OPTIONAL
                                                     : ST_TLS_VERIFY_NONE;
    char reason[ST_TLS_REASON_MAX] = "";
    int rv = st_tls_ctx_create(ST_TLS_SERVER, v, &f, &n->client_tls_server, reason);
    if (rv == 0)
        rv = st_tls_ctx_create(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, &f, &n->client_tls_client,
                               reason);
    if (rv != 0) {
        ST_TRACE_ERROR(MOD, "client %s", reason[0] ? reason : st_strerror(rv));
        node_client_tls_close(n);
        return rv;
    }
    if (st_tls_ctx_key_file_too_open(n->client_tls_server, reason))
        ST_TRACE_WARN(MOD, "client %s", reason);
    return 0;
}

void node_client_tls_close(struct node *n)
{
    st_tls_ctx_destroy(n->client_tls_server);
    st_tls_ctx_destroy(n->client_tls_client);
    n->client_tls_server = n->client_tls_client = NULL;
}

struct st_tls_ctx *node_client_tls_server(const struct node *n)
{
    return n->client_tls_server;
}

struct st_tls_ctx *node_client_tls_client(const struct node *n)
{
    return n->client_tls_client;
}

/* The client context first: it reads every file the server context reads
 * (and the CA), so a bad file is found before anything is swapped and both
 * stay as they were. */
static int client_reload(struct node *n, char *reason, size_t cap)
{
    char why[ST_TLS_REASON_MAX] = "";
    int rv = st_tls_ctx_reload(n->client_tls_client, why);
    if (rv == 0) rv = st_tls_ctx_reload(n->client_tls_server, why);
    if (rv != 0) {
        snprintf(reason, cap, "client %s", why[0] ? why : st_strerror(rv));
        return rv;
    }
    ST_TRACE_INFO(MOD, "client TLS certificates reloaded");
    if (st_tls_ctx_key_file_too_open(n->client_tls_server, why))
        ST_TRACE_WARN(MOD, "client %s", why);
    return 0;
}

int node_tls_reload(struct node *n, char *reason, size_t cap)
{
    bool peer = n->tr != NULL && n->cfg.peer_cert_file[0];
    bool client = n->client_tls_server != NULL;
    if (!peer && !client) {
        snprintf(reason, cap, "TLS is not configured");
        return ST_EINVAL;
    }
    int rv = 0;
    if (peer) rv = st_tr_tls_reload(n->tr, reason, cap);
    if (rv == 0 && client) rv = client_reload(n, reason, cap);
    return rv;
}
