/* Authentication and permission checks of the RESP front end (resp_int.h,
 * docs/REDIS.md "Authentication"): AUTH and HELLO ... AUTH log a
 * connection in with a stcache token (node/auth.h); with --auth every other
 * command needs that first (NOAUTH), and each key argument is checked
 * against the user's role and prefixes (NOPERM, as Redis ACLs answer). */
#include "resp/resp_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "node/auth.h"
#include "stcache/errors.h"

static void reply_error_done(struct resp_slot *s, const char *msg)
{
    struct resp_out o = resp_slot_out(s);
    resp_reply_error(&o, msg);
    resp_slot_done(s);
}

void resp_auth_conn_init(struct resp_conn *c)
{
    node_auth_anonymous(c->srv->node, &c->who);
}

int resp_auth_login(struct resp_conn *c, const struct resp_arg *user, const struct resp_arg *pass)
{
    struct node *n = c->srv->node;
    if (!node_auth_enabled(n)) {
        /* No authentication configured: Redis's "default" user without a
         * password, which any password opens. */
        if (!user || (user->len == 7 && memcmp(user->p, "default", 7) == 0)) return 0;
        return ST_EPERM;
    }
    /* AUTH token, or AUTH user token where the token is "user.secret" or
     * only the secret. */
    char token[NODE_AUTH_TOKEN_BYTES_MAX + 1];
    size_t len;
    if (!user || (pass->len > user->len && pass->p[user->len] == '.' &&
                  memcmp(pass->p, user->p, user->len) == 0)) {
        if (pass->len > NODE_AUTH_TOKEN_BYTES_MAX) return ST_EPERM;
        memcpy(token, pass->p, pass->len);
        len = pass->len;
    } else {
        if (user->len + 1 + pass->len > NODE_AUTH_TOKEN_BYTES_MAX) return ST_EPERM;
        memcpy(token, user->p, user->len);
        token[user->len] = '.';
        memcpy(token + user->len + 1, pass->p, pass->len);
        len = user->len + 1 + pass->len;
    }
    struct node_principal p;
    int rc = node_auth_token(n, token, len, &p);
    memset(token, 0, sizeof token);
    if (rc == 0) c->who = p;
    return rc;
}

bool resp_auth_admit(struct resp_conn *c, struct resp_slot *s, const char *name,
                     const struct resp_auth_cmd *k, const struct resp_arg *argv, uint32_t argc)
{
    struct node *n = c->srv->node;
    if (!node_auth_enabled(n)) return true;
    if (!c->who.authenticated) {
        if (strcmp(name, "auth") == 0 || strcmp(name, "quit") == 0) return true;
        if (strcmp(name, "hello") == 0) {
            for (uint32_t i = 2; i < argc; i++)
                if (argv[i].len == 4 && strncasecmp((const char *)argv[i].p, "auth", 4) == 0)
                    return true;
            reply_error_done(s, "NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used to authenticate the client and select the "
                                "RESP protocol version at the same time");
            return false;
        }
        reply_error_done(s, "NOAUTH Authentication required.");
        return false;
    }
    if (k->admin && !node_auth_is_admin(n, &c->who)) {
        char msg[96];
        snprintf(msg, sizeof msg, "NOPERM this user has no permissions to run the '%s' command",
                 name);
        reply_error_done(s, msg);
        return false;
    }
    if (k->first_key <= 0) return true;
    uint32_t last = k->last_key < 0 ? argc - (uint32_t)(-k->last_key) : (uint32_t)k->last_key;
    for (uint32_t i = (uint32_t)k->first_key; i <= last && i < argc; i += (uint32_t)k->step) {
        if (!node_auth_key_allowed(n, &c->who, k->write, argv[i].p, argv[i].len)) {
            reply_error_done(s, "NOPERM this user has no permissions to access one of the keys "
                                "used as arguments");
            return false;
        }
    }
    return true;
}
