/* Server configuration: flags, config files, peer lists, member contexts,
 * and the small JSON reader the node uses for join requests and replies. */
#include "test.h"

#include "cli/notify.c"
#include "cli/server.c"
#include "node/config.h"
#include "util/json.h"
#include "stcache/errors.h"

#include <stdio.h>
#include <unistd.h>

TEST(addr_split_accepts_host_port_and_bracketed_ipv6)
{
    char host[64];
    uint16_t port;
    ASSERT_EQ(node_addr_split("127.0.0.1:7001", host, sizeof host, &port), 0);
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 7001);
    ASSERT_EQ(node_addr_split("[::1]:80", host, sizeof host, &port), 0);
    ASSERT_STREQ(host, "::1");
    ASSERT_EQ(port, 80);
    ASSERT_EQ(node_addr_split("localhost:65535", host, sizeof host, &port), 0);
}

TEST(addr_split_refuses_malformed_addresses)
{
    char host[64];
    uint16_t port;
    const char *bad[] = {"",        "host",  "host:",  ":80",    "h:0",
                         "h:65536", "h:12x", "::1:80", "[::1]80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(node_addr_split(bad[i], host, sizeof host, &port), ST_EINVAL);
}

TEST(peers_parse_short_and_long_forms)
{
    struct node_peer_addr p[8];
    char err[128];
    int n =
        node_peers_parse("1=127.0.0.1:7001,2=127.0.0.1:7002/127.0.0.1:8002", p, 8, err, sizeof err);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(p[0].id, 1);
    ASSERT_STREQ(p[0].raft, "127.0.0.1:7001");
    ASSERT_STREQ(p[0].http, "");
    ASSERT_EQ(p[1].id, 2);
    ASSERT_STREQ(p[1].http, "127.0.0.1:8002");
}

TEST(peers_parse_refuses_duplicates_bad_ids_and_trailing_commas)
{
    struct node_peer_addr p[8];
    char err[128];
    ASSERT_EQ(node_peers_parse("1=a:1,1=b:2", p, 8, err, sizeof err), ST_EINVAL);
    ASSERT_EQ(node_peers_parse("0=a:1", p, 8, err, sizeof err), ST_EINVAL);
    ASSERT_EQ(node_peers_parse("x=a:1", p, 8, err, sizeof err), ST_EINVAL);
    ASSERT_EQ(node_peers_parse("1=a:1,", p, 8, err, sizeof err), ST_EINVAL);
    ASSERT_EQ(node_peers_parse("1=a", p, 8, err, sizeof err), ST_EINVAL);
    ASSERT_EQ(node_peers_parse("1=a:1,2=b:2,3=c:3", p, 2, err, sizeof err), ST_EINVAL);
}

TEST(cluster_id_from_peers_ignores_list_order_but_not_addresses)
{
    struct node_peer_addr a[3], b[3];
    char err[128];
    ASSERT_EQ(node_peers_parse("1=h:1,2=h:2,3=h:3", a, 3, err, sizeof err), 3);
    ASSERT_EQ(node_peers_parse("3=h:3,1=h:1,2=h:2", b, 3, err, sizeof err), 3);
    ASSERT_EQ(node_cluster_id_from_peers(a, 3), node_cluster_id_from_peers(b, 3));
    ASSERT_EQ(node_peers_parse("1=h:1,2=h:2,3=h:4", b, 3, err, sizeof err), 3);
    ASSERT_NE(node_cluster_id_from_peers(a, 3), node_cluster_id_from_peers(b, 3));
    ASSERT_NE(node_cluster_id_from_peers(a, 3), 0);
}

TEST(context_round_trip)
{
    char ctx[RAFT_MEMBER_CONTEXT_MAX], r[NODE_ADDR_MAX], h[NODE_ADDR_MAX];
    size_t len = node_context_format(ctx, "10.0.0.1:7001", "10.0.0.1:8001");
    node_context_parse(ctx, len, r, h);
    ASSERT_STREQ(r, "10.0.0.1:7001");
    ASSERT_STREQ(h, "10.0.0.1:8001");
    len = node_context_format(ctx, "10.0.0.1:7001", "");
    node_context_parse(ctx, len, r, h);
    ASSERT_STREQ(r, "10.0.0.1:7001");
    ASSERT_STREQ(h, "");
}

static int parse(struct node_config *cfg, char *err, size_t errlen, int argc, char **argv)
{
    return cli_server_parse(argc, argv, cfg, err, errlen);
}

TEST(server_flags_parse_into_the_config)
{
    struct node_config cfg;
    char err[256];
    char *argv[] = {"server",
                    "--id",
                    "3",
                    "--data=/tmp/x",
                    "--raft",
                    "127.0.0.1:7003",
                    "--http",
                    "127.0.0.1:8003",
                    "--join",
                    "127.0.0.1:8001",
                    "--tick-ms",
                    "5",
                    "--election-ticks",
                    "20",
                    "--snapshot-threshold",
                    "100",
                    "--max-value-bytes",
                    "4096",
                    "--request-timeout-ms",
                    "250",
                    "--raft-inflight",
                    "8"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 22, argv), 0);
    ASSERT_EQ(cfg.id, 3);
    ASSERT_STREQ(cfg.data_dir, "/tmp/x");
    ASSERT_EQ(cfg.mode, NODE_START_JOIN);
    ASSERT_STREQ(cfg.join_http, "127.0.0.1:8001");
    ASSERT_EQ(cfg.tick_ms, 5);
    ASSERT_EQ(cfg.election_ticks, 20);
    ASSERT_EQ(cfg.snapshot_threshold, 100);
    ASSERT_EQ(cfg.max_value_bytes, 4096);
    ASSERT_EQ(cfg.request_timeout_ms, 250);
    ASSERT_EQ(cfg.raft_inflight, 8);
    ASSERT_FALSE(cfg.bootstrap_if_empty);
}

TEST(memory_flags_parse_with_defaults_and_refuse_unknown_policies)
{
    struct node_config cfg;
    char err[256];
    node_config_default(&cfg);
    ASSERT_EQ(cfg.snapshot_log_bytes, UINT64_C(64) << 20);
    ASSERT_EQ(cfg.max_memory, 0);
    ASSERT_EQ(cfg.eviction_policy, NODE_EVICT_NONE);
    ASSERT_EQ(node_config_set(&cfg, "snapshot-log-bytes", "8388608", err, sizeof err), 0);
    ASSERT_EQ(cfg.snapshot_log_bytes, 8388608);
    ASSERT_EQ(node_config_set(&cfg, "max-memory", "1048576", err, sizeof err), 0);
    ASSERT_EQ(cfg.max_memory, 1048576);
    const char *names[] = {"noeviction", "allkeys-lru", "volatile-lru", "allkeys-random",
                           "volatile-ttl"};
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(node_config_set(&cfg, "eviction-policy", names[i], err, sizeof err), 0);
        ASSERT_EQ(cfg.eviction_policy, i);
        ASSERT_STREQ(node_eviction_policy_name(cfg.eviction_policy), names[i]);
    }
    ASSERT_EQ(node_config_set(&cfg, "eviction-policy", "allkeys-lfu", err, sizeof err), ST_EINVAL);
    ASSERT_TRUE(strstr(err, "--eviction-policy") != NULL);
    ASSERT_EQ(node_config_set(&cfg, "max-memory", "lots", err, sizeof err), ST_EINVAL);
}

TEST(idempotency_and_purge_flags_parse_default_and_refuse_zero)
{
    struct node_config cfg;
    char err[256];
    char *d[] = {"server"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 1, d), 0);
    ASSERT_EQ(cfg.idempotency_keys_max, 100000);
    ASSERT_EQ(cfg.idempotency_ttl_s, 3600);
    ASSERT_EQ(cfg.purge_interval_ms, 100);
    char *a[] = {
        "server", "--idempotency-keys-max", "7", "--idempotency-ttl-s=9", "--purge-interval-ms",
        "50"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 6, a), 0);
    ASSERT_EQ(cfg.idempotency_keys_max, 7);
    ASSERT_EQ(cfg.idempotency_ttl_s, 9);
    ASSERT_EQ(cfg.purge_interval_ms, 50);
    char *z1[] = {"server", "--idempotency-keys-max", "0"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, z1), 2);
    ASSERT_TRUE(strstr(err, "--idempotency-keys-max") != NULL);
    char *z2[] = {"server", "--idempotency-ttl-s", "0"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, z2), 2);
    ASSERT_TRUE(strstr(err, "--idempotency-ttl-s") != NULL);
}

TEST(server_without_flags_bootstraps_an_empty_default_directory)
{
    struct node_config cfg;
    char err[256];
    char *argv[] = {"server"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 1, argv), 0);
    ASSERT_TRUE(cfg.bootstrap_if_empty);
    ASSERT_EQ(cfg.id, 1);
    ASSERT_STREQ(cfg.data_dir, "./data");
    ASSERT_STREQ(cfg.raft_listen, "127.0.0.1:7001");
    ASSERT_STREQ(cfg.http_listen, "127.0.0.1:8001");
    ASSERT_EQ(cfg.raft_inflight, 1);
}

TEST(wal_segment_bytes_must_be_aligned_and_hold_the_largest_entry)
{
    struct node_config cfg;
    char err[256];
    char *ok[] = {"server", "--wal-segment-bytes", "1048576", "--max-value-bytes", "131072"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 5, ok), 0);
    ASSERT_EQ(cfg.wal_segment_bytes, 1048576);
    char *dflt[] = {"server"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 1, dflt), 0);
    ASSERT_EQ(cfg.wal_segment_bytes, 64u << 20);
    char *unaligned[] = {"server", "--wal-segment-bytes", "1048577", "--max-value-bytes", "1024"};
    ASSERT_NE(parse(&cfg, err, sizeof err, 5, unaligned), 0);
    ASSERT_TRUE(strstr(err, "--wal-segment-bytes") != NULL);
    /* the default 1 MiB value does not fit a 1 MiB segment */
    char *small[] = {"server", "--wal-segment-bytes", "1048576"};
    ASSERT_NE(parse(&cfg, err, sizeof err, 3, small), 0);
    ASSERT_TRUE(strstr(err, "--wal-segment-bytes") != NULL);
}

TEST(server_bad_flags_fail_with_a_reason)
{
    struct node_config cfg;
    char err[256];
    char *a1[] = {"server", "--id", "0"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a1), 2);
    ASSERT_TRUE(strstr(err, "--id") != NULL);
    char *a2[] = {"server", "--bogus", "1"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a2), 2);
    ASSERT_TRUE(strstr(err, "unknown option") != NULL);
    char *a3[] = {"server", "--bootstrap", "--join", "h:1"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 4, a3), 2);
    char *a4[] = {"server", "--raft"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 2, a4), 2);
    char *a5[] = {"server", "--peers", "2=h:1,3=h:2"}; /* self (id 1) missing */
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a5), 2);
    ASSERT_TRUE(strstr(err, "--peers") != NULL);
    char *a6[] = {"server", "--heartbeat-ticks", "10"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a6), 2);
    char *a7[] = {"server", "stray"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 2, a7), 2);
    char *a8[] = {"server", "--raft-inflight", "0"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a8), 2);
    ASSERT_TRUE(strstr(err, "--raft-inflight") != NULL);
}

TEST(output_bound_flags_default_parse_and_validate)
{
    struct node_config cfg;
    char err[256];
    char *a0[] = {"server"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 1, a0), 0);
    ASSERT_EQ(cfg.client_output_bytes_max, 64u << 20);
    ASSERT_EQ(cfg.conn_output_bytes_max, 1u << 20);
    char *a1[] = {"server", "--client-output-bytes-max", "16777216", "--conn-output-bytes-max",
                  "65536"};
    ASSERT_EQ(parse(&cfg, err, sizeof err, 5, a1), 0);
    ASSERT_EQ(cfg.client_output_bytes_max, 16u << 20);
    ASSERT_EQ(cfg.conn_output_bytes_max, 65536);
    char *a2[] = {"server", "--client-output-bytes-max", "1000"}; /* below 1 MiB */
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a2), 2);
    ASSERT_TRUE(strstr(err, "--client-output-bytes-max") != NULL);
    char *a3[] = {"server", "--client-output-bytes-max", "2097152", "--conn-output-bytes-max",
                  "4194304"}; /* one connection's bound above the global one */
    ASSERT_EQ(parse(&cfg, err, sizeof err, 5, a3), 2);
    ASSERT_TRUE(strstr(err, "--conn-output-bytes-max") != NULL);
    char *a4[] = {"server", "--client-output-bytes-max", "16777216", "--max-value-bytes",
                  "16777216"}; /* one large value could not be read */
    ASSERT_EQ(parse(&cfg, err, sizeof err, 5, a4), 2);
    ASSERT_TRUE(strstr(err, "--max-value-bytes") != NULL);
    char *a5[] = {"server", "--max-value-bytes", "16777216"}; /* 64 MiB default suffices */
    ASSERT_EQ(parse(&cfg, err, sizeof err, 3, a5), 0);
}

TEST(config_file_sets_options_and_flags_override_it)
{
    char path[] = "/tmp/stcache-cfg-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "# a comment\nid = 7\n  data = /tmp/d7  \nbootstrap = true\ntick-ms = 3 # trailing\n");
    fclose(f);
    struct node_config cfg;
    char err[256];
    char *argv[] = {"server", "--config", path, "--tick-ms", "4"};
    int rc = parse(&cfg, err, sizeof err, 5, argv);
    unlink(path);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(cfg.id, 7);
    ASSERT_STREQ(cfg.data_dir, "/tmp/d7");
    ASSERT_EQ(cfg.mode, NODE_START_BOOTSTRAP);
    ASSERT_EQ(cfg.tick_ms, 4);
}

TEST(config_file_errors_name_the_line)
{
    char path[] = "/tmp/stcache-cfg-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "id = 2\nnonsense\n");
    fclose(f);
    struct node_config cfg;
    node_config_default(&cfg);
    char err[256];
    int rc = node_config_load_file(&cfg, path, err, sizeof err);
    unlink(path);
    ASSERT_EQ(rc, ST_EINVAL);
    ASSERT_TRUE(strstr(err, ":2:") != NULL);
}

TEST(jsonr_reads_join_requests_and_replies)
{
    const char *doc = "{\"id\": 4, \"raft\":\"127.0.0.1:7004\", \"http\" : \"127.0.0.1:8004\","
                      " \"members\":[{\"id\":1,\"voter\":true},{\"id\":2,\"voter\":false}]}";
    ASSERT_EQ(st_jsonr_validate(doc, strlen(doc)), 0);
    struct st_jsonr_span d = {doc, strlen(doc)}, v, m;
    uint64_t id;
    char s[64];
    ASSERT_TRUE(st_jsonr_get(d, "id", &v));
    ASSERT_EQ(st_jsonr_uint(v, &id), 0);
    ASSERT_EQ(id, 4);
    ASSERT_TRUE(st_jsonr_get(d, "http", &v));
    ASSERT_EQ(st_jsonr_string(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "127.0.0.1:8004");
    ASSERT_FALSE(st_jsonr_get(d, "nope", &v));
    ASSERT_TRUE(st_jsonr_get(d, "members", &v));
    size_t cur = 0;
    int count = 0;
    bool voter = false;
    while (st_jsonr_array_next(v, &cur, &m)) {
        struct st_jsonr_span f;
        ASSERT_TRUE(st_jsonr_get(m, "voter", &f));
        ASSERT_EQ(st_jsonr_bool(f, &voter), 0);
        count++;
    }
    ASSERT_EQ(count, 2);
    ASSERT_FALSE(voter);
}

TEST(jsonr_refuses_malformed_documents)
{
    const char *bad[] = {"",           "{",           "{\"a\":}", "{\"a\":1,}",
                         "[1,2",       "{\"a\":tru}", "{} x",     "{\"a\":\"\x01\"}",
                         "{\"a\":01x}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(st_jsonr_validate(bad[i], strlen(bad[i])), ST_EINVAL);
    struct st_jsonr_span v = {"-1", 2};
    uint64_t x;
    ASSERT_EQ(st_jsonr_uint(v, &x), ST_EINVAL);
    struct st_jsonr_span big = {"18446744073709551616", 20};
    ASSERT_EQ(st_jsonr_uint(big, &x), ST_EINVAL);
}

TEST_MAIN()
