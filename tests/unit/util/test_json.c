/* The shared JSON reader (util/json.h) on the documents the CLI reads: the
 * /cluster answer, error answers with escapes. (The writer's escaping is
 * tested in tests/unit/http/test_helpers.c, the node's join documents in
 * tests/unit/node/test_config.c.) */
#include "test.h"

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/json.h"

static struct st_jsonr_span span_of(const char *s)
{
    return (struct st_jsonr_span){s, strlen(s)};
}

TEST(json_cluster_answer_is_navigable)
{
    const char *js =
        "{\"id\":2,\"leader\":1,\"term\":7,\"role\":\"follower\",\"cluster_id\":\"ab\\\"c\","
        " \"members\":[{\"id\":1,\"raft\":\"127.0.0.1:9001\",\"http\":\"h:1\",\"voter\":true},"
        "{\"id\":2,\"raft\":\"r2\",\"http\":\"h:2\",\"voter\":false,\"extra\":{\"a\":[1,2,{}]}}],"
        "\"applied\":-3e2}";
    ASSERT_EQ(st_jsonr_validate(js, strlen(js)), 0);
    struct st_jsonr_span doc = st_jsonr_root(js, strlen(js)), v, m, second;
    ASSERT_EQ(st_jsonr_type(doc), ST_JSONR_OBJECT);
    int64_t n;
    ASSERT_TRUE(st_jsonr_get(doc, "term", &v));
    ASSERT_EQ(st_jsonr_int(v, &n), 0);
    ASSERT_EQ(n, 7);
    char s[64];
    ASSERT_TRUE(st_jsonr_get(doc, "cluster_id", &v));
    ASSERT_EQ(st_jsonr_copy(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "ab\"c");
    ASSERT_TRUE(st_jsonr_get(doc, "members", &m));
    ASSERT_EQ(st_jsonr_type(m), ST_JSONR_ARRAY);
    size_t cursor = 0, count = 0;
    while (st_jsonr_array_next(m, &cursor, &second))
        count++;
    ASSERT_EQ(count, 2);
    ASSERT_TRUE(st_jsonr_get(second, "voter", &v));
    ASSERT_EQ(st_jsonr_copy(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "false");
    /* "applied" comes after a nested subtree: the lookup must step over it */
    ASSERT_TRUE(st_jsonr_get(doc, "applied", &v));
    ASSERT_EQ(st_jsonr_copy(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "-3e2");
    ASSERT_EQ(st_jsonr_int(v, &n), ST_EINVAL); /* not an integer */
    ASSERT_FALSE(st_jsonr_get(doc, "absent", &v));
    ASSERT_FALSE(st_jsonr_get(m, "id", &v)); /* not an object */
    ASSERT_TRUE(st_jsonr_get(span_of("{\"v\":-12}"), "v", &v));
    ASSERT_EQ(st_jsonr_int(v, &n), 0);
    ASSERT_EQ(n, -12);
}

TEST(json_unescapes_unicode_and_surrogates)
{
    const char *js = "\"a\\u00e9\\u20ac\\ud83d\\ude00\\n\"";
    ASSERT_EQ(st_jsonr_validate(js, strlen(js)), 0);
    struct st_jsonr_span v = st_jsonr_root(js, strlen(js));
    ASSERT_EQ(st_jsonr_type(v), ST_JSONR_STRING);
    char s[32];
    ASSERT_EQ(st_jsonr_copy(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n");
    ASSERT_EQ(st_jsonr_copy(v, s, 4), ST_ETOOBIG);
    ASSERT_STREQ(s, "a\xc3\xa9"); /* a terminated prefix */
    const char *lone = "\"\\udc00\"";
    ASSERT_EQ(st_jsonr_validate(lone, strlen(lone)), 0);
    ASSERT_EQ(st_jsonr_copy(span_of(lone), s, sizeof s), ST_EINVAL);
    /* st_jsonr_string refuses escapes: addresses never carry any */
    ASSERT_EQ(st_jsonr_string(span_of(js), s, sizeof s), ST_EINVAL);
}

TEST(json_rejects_malformed_and_bounds_depth)
{
    const char *bad[] = {"",      "{",     "{\"a\"}", "{\"a\":}", "[1,]", "{\"a\":1,}",
                         "[1 2]", "\"abc", "\"\\x\"", "01",       "-",    "1.",
                         "tru",   "{1:2}", "[1]x",    "\"\x01\"", "1e",   "\"\\u12\""};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        int rc = st_jsonr_validate(bad[i], strlen(bad[i]));
        if (rc != ST_EINVAL) fprintf(stderr, "  accepted: '%s' (%d)\n", bad[i], rc);
        ASSERT_EQ(rc, ST_EINVAL);
    }
    ASSERT_EQ(st_jsonr_validate(" [1,2,3] ", 9), 0);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    ASSERT_EQ(st_jsonr_validate(deep, 200), ST_ETOOBIG);
    ASSERT_EQ(st_jsonr_validate(deep + 100 - ST_JSONR_DEPTH_MAX, 2 * ST_JSONR_DEPTH_MAX), 0);
}

TEST(utf8_validation_decides_text_or_base64)
{
    ASSERT_TRUE(st_json_utf8_valid((const uint8_t *)"plain", 5));
    ASSERT_TRUE(st_json_utf8_valid((const uint8_t *)"\xc3\xa9\xf0\x9f\x98\x80", 6));
    ASSERT_FALSE(st_json_utf8_valid((const uint8_t *)"\xff", 1));
    ASSERT_FALSE(st_json_utf8_valid((const uint8_t *)"\xc3", 1));         /* truncated */
    ASSERT_FALSE(st_json_utf8_valid((const uint8_t *)"\xc0\x80", 2));     /* overlong */
    ASSERT_FALSE(st_json_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3)); /* surrogate */
}

TEST(writer_output_reads_back)
{
    struct st_membuf b;
    struct st_json w;
    st_membuf_init(&b);
    st_json_init(&w, &b);
    st_json_object_begin(&w);
    st_json_key(&w, "k");
    st_json_string(&w, "a\"\x01\xff", 4);
    st_json_key(&w, "n");
    st_json_int(&w, -5);
    st_json_object_end(&w);
    ASSERT_EQ(st_json_finish(&w), 0);
    ASSERT_EQ(st_jsonr_validate(b.data, b.len), 0);
    struct st_jsonr_span v;
    ASSERT_TRUE(st_jsonr_get(st_jsonr_root(b.data, b.len), "k", &v));
    char s[16];
    ASSERT_EQ(st_jsonr_copy(v, s, sizeof s), 0);
    ASSERT_STREQ(s, "a\"\x01\xc3\xbf"); /* the invalid byte comes back as U+00FF */
    st_membuf_free(&b);
}

/* The per-byte escaping rules, written out plainly: what the writer (which
 * skips 8 plain bytes at a time) must produce byte for byte. */
static size_t ref_escape(const uint8_t *s, size_t len, char *out)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len;) {
        uint8_t ch = s[i];
        size_t n = 1;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' || ch == '\f') {
            out[o++] = '\\';
            out[o++] = (char)(ch == '\n'   ? 'n'
                              : ch == '\r' ? 'r'
                              : ch == '\t' ? 't'
                              : ch == '\b' ? 'b'
                                           : 'f');
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)sprintf(out + o, "\\u%04x", ch);
        } else if (ch >= 0x80) {
            if (i + 1 < len && (ch & 0xe0) == 0xc0 && st_json_utf8_valid(s + i, 2)) {
                out[o++] = (char)s[i];
                out[o++] = (char)s[i + 1];
                n = 2;
            } else {
                o += (size_t)sprintf(out + o, "\\u%04x", ch);
            }
        } else {
            out[o++] = (char)ch;
        }
        i += n;
    }
    out[o++] = '"';
    return o;
}

TEST(writer_escapes_every_byte_at_every_offset)
{
    /* One special byte (or a 2-byte UTF-8 sequence) at each offset of a
     * plain string of each length up to 40: the word-at-a-time fast path
     * must hand every such byte to the per-byte rules. */
    static const uint8_t specials[] = {'"', '\\', '\n', 0x01, 0x1f, 0x7f, 0x80, 0xff, 0xc3};
    uint8_t in[48];
    char want[48 * 6 + 2];
    for (size_t len = 1; len <= 40; len++) {
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                for (size_t i = 0; i < len; i++)
                    in[i] = (uint8_t)('a' + (i % 26));
                in[at] = specials[k];
                if (specials[k] == 0xc3 && at + 1 < len) in[at + 1] = 0xa9; /* é */
                struct st_membuf b;
                struct st_json w;
                st_membuf_init(&b);
                st_json_init(&w, &b);
                st_json_string(&w, in, len);
                ASSERT_EQ(st_json_finish(&w), 0);
                size_t wn = ref_escape(in, len, want);
                ASSERT_EQ(b.len, wn);
                ASSERT_TRUE(memcmp(b.data, want, wn) == 0);
                int valid = st_json_utf8_valid(in, len);
                int want_valid = specials[k] < 0x80 || (specials[k] == 0xc3 && at + 1 < len);
                ASSERT_EQ(valid, want_valid);
                st_membuf_free(&b);
            }
        }
    }
}

TEST_MAIN()
