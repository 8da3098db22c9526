/* The transport over mutual TLS: every test of test_transport.c runs again
 * with certificates from scripts/gen-certs.sh (except those whose fake peers
 * speak plaintext), plus the refusals only TLS can make: a certificate of
 * another CA, a certificate naming another node than the one claimed or
 * dialed; session resumption; reloading certificates. */
#define ST_TR_TEST_TLS 1
#include "test_transport.c"

#include "tls_certs.h"

__attribute__((constructor(200))) static void tls_setup(void)
{
    tls_dir = st_test_certs_setup("st-tr-tls");
    st_test_certs_gen("", "ca");
    for (int i = 1; i <= 5; i++)
        st_test_certs_gen("", "node %d localhost 127.0.0.1 ::1", i);
    st_test_certs_gen("other", "ca");
    st_test_certs_gen("other", "node 2");
}

static char alt_paths[3][320];

/* Node `id` presenting the certificate files given (relative to tls_dir). */
static void ep_start_with(struct ep *e, raft_id id, const char *crt, const char *key,
                          const char *ca)
{
    struct st_tr_config cfg;
    ep_config(&cfg, id, CLUSTER, 0);
    snprintf(alt_paths[0], sizeof alt_paths[0], "%s/%s", tls_dir, crt);
    snprintf(alt_paths[1], sizeof alt_paths[1], "%s/%s", tls_dir, key);
    snprintf(alt_paths[2], sizeof alt_paths[2], "%s/%s", tls_dir, ca);
    cfg.tls_cert_file = alt_paths[0];
    cfg.tls_key_file = alt_paths[1];
    cfg.tls_ca_file = alt_paths[2];
    ep_start_cfg(e, &cfg);
}

static uint64_t tls_failures(struct ep *e)
{
    struct st_tr_stats st;
    st_tr_stats_get(e->tr, &st);
    return st.tls_failures + st.handshakes_refused;
}

TEST(tls_a_certificate_naming_another_node_than_the_dialed_one_is_dropped)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start_with(&b, 2, "node-3.crt", "node-3.key", "ca.crt"); /* valid, but node 3's */
    link_peers(&a, &b);
    RUN_UNTIL(tls_failures(&a) >= 3);
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(tls_a_dialer_claiming_another_id_than_its_certificate_is_refused)
{
    loop_setup();
    struct ep a, b;
    ep_start_with(&a, 1, "node-4.crt", "node-4.key", "ca.crt"); /* claims 1, proves 4 */
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(tls_failures(&b) >= 3);
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ASSERT_FALSE(st_tr_peer_connected(b.tr, 1));
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(tls_a_certificate_of_another_ca_is_refused)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start_with(&b, 2, "other/node-2.crt", "other/node-2.key", "other/ca.crt");
    link_peers(&a, &b);
    RUN_UNTIL(tls_failures(&a) >= 2 && tls_failures(&b) >= 2);
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(tls_a_reconnecting_dialer_resumes_its_session)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    /* a message both ways, so the tickets have arrived */
    ASSERT_EQ(send_append(&a, 2, 0, 1, 1), 0);
    ASSERT_EQ(send_append(&b, 1, 0, 1, 1), 0);
    RUN_UNTIL(a.n_append == 1 && b.n_append == 1);
    ASSERT_EQ(st_tr_peer_remove(b.tr, 1), 0); /* b drops the link; a redials */
    RUN_UNTIL(a.n_down == 1);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 2);
    struct st_tr_stats st;
    st_tr_stats_get(a.tr, &st);
    ASSERT_GE(st.tls_resumed, 1);
    ASSERT_EQ(send_append(&a, 2, 1, 1, 1), 0);
    RUN_UNTIL(b.n_append == 2);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(tls_reload_refuses_a_bad_file_and_takes_a_good_one)
{
    loop_setup();
    st_test_sh("mkdir -p %s/live && cp %s/node-2.crt %s/node-2.key %s/live/", tls_dir, tls_dir,
               tls_dir, tls_dir);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start_with(&b, 2, "live/node-2.crt", "live/node-2.key", "ca.crt");
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    char reason[256];
    st_test_sh("echo garbage > %s/live/node-2.crt", tls_dir);
    ASSERT_EQ(st_tr_tls_reload(b.tr, reason, sizeof reason), ST_EINVAL);
    ASSERT_TRUE(strstr(reason, "live/node-2.crt") != NULL);
    /* the old certificate still serves a new connection */
    ASSERT_EQ(st_tr_peer_remove(b.tr, 1), 0);
    RUN_UNTIL(a.n_down == 1);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 2);
    /* a new pair (a re-issued certificate) is taken; the link stays up */
    st_test_sh(
        "%s/scripts/gen-certs.sh %s node 2 >/dev/null && cp %s/node-2.crt %s/node-2.key %s/live/",
        ST_SOURCE_DIR, tls_dir, tls_dir, tls_dir, tls_dir);
    ASSERT_EQ(st_tr_tls_reload(b.tr, reason, sizeof reason), 0);
    ASSERT_TRUE(st_tr_peer_connected(a.tr, 2));
    ASSERT_EQ(send_append(&a, 2, 0, 1, 1), 0);
    RUN_UNTIL(b.n_append == 1);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(tls_plaintext_is_not_accepted_by_a_tls_node)
{
    loop_setup();
    struct ep a, b;
    struct st_tr_config cfg;
    ep_config(&cfg, 1, CLUSTER, 0);
    cfg.tls_cert_file = cfg.tls_key_file = cfg.tls_ca_file = NULL; /* a plaintext dialer */
    ep_start_cfg(&a, &cfg);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(tls_failures(&b) >= 2);
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST_MAIN()
