/* node/auth.h on one bootstrapped node with --auth: the first admin from
 * --initial-admin-token-file, the token cache (the KDF once per token, a
 * hit afterwards, emptied when the table changes so a rotated or removed
 * token stops working at once), and a refusal that is the same for an
 * unknown user and a wrong secret. */
#include "harness.h"

#include "node/auth.h"

static struct hnode single;
static char admin_token[128];

static bool admin_exists(void *arg)
{
    (void)arg;
    return node_auth_user_count(single.node) > 0;
}

struct done {
    bool done;
    int status;
};

static void write_cb(void *ctx, int status)
{
    struct done *d = ctx;
    d->done = true;
    d->status = status;
}

static bool is_done(void *arg)
{
    return ((struct done *)arg)->done;
}

static void start_auth_node(void)
{
    h_init();
    memset(&single, 0, sizeof single);
    h_mkdtemp(single.dir, sizeof single.dir);
    h_config(&single, 1);
    single.cfg.mode = NODE_START_BOOTSTRAP;
    single.cfg.auth = true;
    /* The token file beside DATA (the harness removes the parent). */
    char path[NODE_PATH_MAX];
    snprintf(path, sizeof path, "%.*s/admin.token", (int)(strlen(single.dir) - 5), single.dir);
    snprintf(admin_token, sizeof admin_token, "root.%s",
             "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fprintf(f, "%s\n", admin_token);
    fclose(f);
    snprintf(single.cfg.initial_admin_token_file, sizeof single.cfg.initial_admin_token_file, "%s",
             path);
    ASSERT_EQ(h_start(&single), 0);
    ASSERT_TRUE(h_run_until(admin_exists, NULL));
}

TEST(the_kdf_runs_once_per_token_and_the_cache_empties_when_the_table_changes)
{
    start_auth_node();
    struct node *n = single.node;
    struct node_principal p;
    struct node_auth_stats st;
    ASSERT_TRUE(node_auth_enabled(n));
    node_auth_anonymous(n, &p);
    ASSERT_FALSE(p.authenticated);
    ASSERT_EQ(node_auth_token(n, admin_token, strlen(admin_token), &p), 0);
    ASSERT_TRUE(p.authenticated);
    ASSERT_EQ(p.role, NODE_ROLE_ADMIN);
    ASSERT_STREQ(p.name, "root");
    ASSERT_EQ(node_auth_token(n, admin_token, strlen(admin_token), &p), 0);
    node_auth_stats_get(n, &st);
    ASSERT_EQ(st.verified, 1);
    ASSERT_EQ(st.cache_hits, 1);
    /* A wrong secret and an unknown user: the same refusal. */
    char bad[128];
    snprintf(bad, sizeof bad, "root.%s", "Xbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
    ASSERT_EQ(node_auth_token(n, bad, strlen(bad), &p), ST_EPERM);
    ASSERT_FALSE(p.authenticated);
    snprintf(bad, sizeof bad, "nobody.%s", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
    ASSERT_EQ(node_auth_token(n, bad, strlen(bad), &p), ST_EPERM);
    ASSERT_EQ(node_auth_token(n, "root", 4, &p), ST_EPERM);
    ASSERT_EQ(node_auth_token(n, "root.short", 10, &p), ST_EPERM);
    /* A new user through the log; its token checks out. */
    char tok[NODE_AUTH_TOKEN_BYTES_MAX];
    const uint8_t *pre[] = {(const uint8_t *)"app/"};
    size_t pre_len[] = {4};
    struct done d = {0};
    ASSERT_EQ(node_auth_user_add(n, "app", 3, NODE_ROLE_READWRITE, pre, pre_len, 1, tok, sizeof tok,
                                 write_cb, &d),
              0);
    ASSERT_TRUE(h_run_until(is_done, &d));
    ASSERT_EQ(d.status, 0);
    ASSERT_EQ(node_auth_token(n, tok, strlen(tok), &p), 0);
    ASSERT_TRUE(node_auth_key_allowed(n, &p, true, (const uint8_t *)"app/1", 5));
    ASSERT_FALSE(node_auth_key_allowed(n, &p, false, (const uint8_t *)"other", 5));
    ASSERT_FALSE(node_auth_is_admin(n, &p));
    node_auth_stats_get(n, &st);
    ASSERT_TRUE(st.cache_resets >= 1); /* the table changed: the cache started over */
    /* Rotation: the old token (cached) stops working at the apply. */
    ASSERT_EQ(node_auth_token(n, tok, strlen(tok), &p), 0);
    char tok2[NODE_AUTH_TOKEN_BYTES_MAX];
    d.done = false;
    ASSERT_EQ(node_auth_user_token(n, "app", 3, tok2, sizeof tok2, write_cb, &d), 0);
    ASSERT_TRUE(h_run_until(is_done, &d));
    ASSERT_EQ(d.status, 0);
    ASSERT_EQ(node_auth_token(n, tok, strlen(tok), &p), ST_EPERM);
    ASSERT_EQ(node_auth_token(n, tok2, strlen(tok2), &p), 0);
    /* Removal: refused at once, and a principal resolved before is too. */
    d.done = false;
    ASSERT_EQ(node_auth_user_delete(n, "app", 3, write_cb, &d), 0);
    ASSERT_TRUE(h_run_until(is_done, &d));
    ASSERT_EQ(d.status, 0);
    ASSERT_FALSE(node_auth_key_allowed(n, &p, false, (const uint8_t *)"app/1", 5));
    ASSERT_EQ(node_auth_token(n, tok2, strlen(tok2), &p), ST_EPERM);
    /* Adding an existing user is refused by the log (the condition). */
    d.done = false;
    ASSERT_EQ(node_auth_user_add(n, "root", 4, NODE_ROLE_READONLY, NULL, NULL, 0, tok, sizeof tok,
                                 write_cb, &d),
              0);
    ASSERT_TRUE(h_run_until(is_done, &d));
    ASSERT_EQ(d.status, ST_EPRECONDITION);
    h_stop(&single);
    h_rmrf(single.dir);
    h_fini();
}

TEST_MAIN()
