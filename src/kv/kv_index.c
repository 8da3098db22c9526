/* kv index: the B+tree of entry pointers that orders keys for listing.
 * Contracts in kv_index.h, layout and costs in docs/KV.md. */
#include "kv/kv_index.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_int.h"
#include "stcache/errors.h"
#include "util/assert.h"

#define F KV_INDEX_FANOUT

/* Leaves are allocated without the child array. In an inner node e[0] is
 * unused (child 0 has no separator); in a spare node e[0]'s bytes chain the
 * spare list. */
struct kv_index_node {
    uint32_t n; /* entries (leaf) or children (inner) */
    uint32_t leaf;
    struct kv_entry *e[F];
    struct kv_index_node *child[];
};

#define LEAF_BYTES (offsetof(struct kv_index_node, child))
#define INNER_BYTES (offsetof(struct kv_index_node, child) + F * sizeof(struct kv_index_node *))

static struct kv_index_node *spare_next(const struct kv_index_node *nd)
{
    struct kv_index_node *p;
    memcpy(&p, &nd->e[0], sizeof(p));
    return p;
}

static void spare_push(struct kv_index_node **head, uint32_t *n, struct kv_index_node *nd)
{
    memcpy(&nd->e[0], head, sizeof(*head));
    *head = nd;
    (*n)++;
}

static struct kv_index_node *spare_pop(struct kv_index_node **head, uint32_t *n)
{
    struct kv_index_node *nd = *head;
    ST_ASSERT(nd && *n > 0);
    *head = spare_next(nd);
    (*n)--;
    return nd;
}

static void node_free(struct kv_index *ix, struct kv_index_node *nd)
{
    ix->bytes -= malloc_usable_size(nd);
    free(nd);
}

static struct kv_index_node *take_node(struct kv_index *ix, int leaf)
{
    struct kv_index_node *nd = leaf ? spare_pop(&ix->spare_leaf, &ix->spare_leaves)
                                    : spare_pop(&ix->spare_inner, &ix->spare_inners);
    nd->n = 0;
    nd->leaf = (uint32_t)leaf;
    return nd;
}

/* A node no longer used: kept as a spare while the reserve is short, else
 * freed, so deletes give memory back. */
static void drop_node(struct kv_index *ix, struct kv_index_node *nd)
{
    if (nd->leaf && ix->spare_leaves < 1)
        spare_push(&ix->spare_leaf, &ix->spare_leaves, nd);
    else if (!nd->leaf && ix->spare_inners < ix->height + 1)
        spare_push(&ix->spare_inner, &ix->spare_inners, nd);
    else
        node_free(ix, nd);
}

void kv_index_init(struct kv_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

static void free_tree(struct kv_index *ix, struct kv_index_node *nd)
{
    if (!nd->leaf)
        for (uint32_t i = 0; i < nd->n; i++)
            free_tree(ix, nd->child[i]);
    node_free(ix, nd);
}

void kv_index_free(struct kv_index *ix)
{
    if (ix->root) free_tree(ix, ix->root);
    while (ix->spare_leaves)
        node_free(ix, spare_pop(&ix->spare_leaf, &ix->spare_leaves));
    while (ix->spare_inners)
        node_free(ix, spare_pop(&ix->spare_inner, &ix->spare_inners));
    kv_index_init(ix);
}

int kv_index_reserve(struct kv_index *ix, const struct kv_config *cfg)
{
    /* One insert splits at most one leaf and every inner node above it, and
     * may add a root. */
    while (ix->spare_leaves < 1) {
        struct kv_index_node *nd = kv_malloc(cfg, LEAF_BYTES);
        if (!nd) return ST_ENOMEM;
        ix->bytes += malloc_usable_size(nd);
        spare_push(&ix->spare_leaf, &ix->spare_leaves, nd);
    }
    while (ix->spare_inners < ix->height + 1) {
        struct kv_index_node *nd = kv_malloc(cfg, INNER_BYTES);
        if (!nd) return ST_ENOMEM;
        ix->bytes += malloc_usable_size(nd);
        spare_push(&ix->spare_inner, &ix->spare_inners, nd);
    }
    return 0;
}

int kv_index_key_cmp(const void *key, size_t len, const struct kv_entry *e)
{
    size_t n = ST_MIN(len, (size_t)e->key_len);
    int c = n ? memcmp(key, e->data, n) : 0;
    if (c != 0) return c;
    return len < e->key_len ? -1 : len > e->key_len ? 1 : 0;
}

/* Leaf: the first position whose key is >= key. */
static uint32_t leaf_lower(const struct kv_index_node *nd, const void *key, size_t len)
{
    uint32_t lo = 0, hi = nd->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (kv_index_key_cmp(key, len, nd->e[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Inner: the child whose subtree may hold key (the last separator <= key). */
static uint32_t inner_child(const struct kv_index_node *nd, const void *key, size_t len)
{
    uint32_t lo = 1, hi = nd->n; /* separators e[1..n) */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (kv_index_key_cmp(key, len, nd->e[mid]) >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static struct kv_entry *leftmost(const struct kv_index_node *nd)
{
    while (!nd->leaf)
        nd = nd->child[0];
    ST_ASSERT(nd->n > 0);
    return nd->e[0];
}

/* ---------- insert ---------- */

void kv_index_insert(struct kv_index *ix, struct kv_entry *e)
{
    ST_ASSERT(ix->spare_leaves >= 1 && ix->spare_inners >= ix->height + 1);
    const uint8_t *key = e->data;
    size_t len = e->key_len;
    if (!ix->root) {
        ix->root = take_node(ix, 1);
        ix->height = 1;
    }
    struct kv_index_node *path[KV_INDEX_HEIGHT_MAX];
    uint32_t pos[KV_INDEX_HEIGHT_MAX];
    struct kv_index_node *nd = ix->root;
    uint32_t d = 0;
    while (!nd->leaf) {
        path[d] = nd;
        pos[d] = inner_child(nd, key, len);
        nd = nd->child[pos[d]];
        d++;
    }
    uint32_t p = leaf_lower(nd, key, len);
    ST_ASSERT(p == nd->n || kv_index_key_cmp(key, len, nd->e[p]) != 0);
    ix->count++;
    if (nd->n < F) {
        memmove(&nd->e[p + 1], &nd->e[p], (nd->n - p) * sizeof(nd->e[0]));
        nd->e[p] = e;
        nd->n++;
        return;
    }
    /* Split the full leaf around the new entry: F + 1 entries, halves. */
    struct kv_entry *tmp[F + 1];
    memcpy(tmp, nd->e, p * sizeof(tmp[0]));
    tmp[p] = e;
    memcpy(&tmp[p + 1], &nd->e[p], (F - p) * sizeof(tmp[0]));
    uint32_t left = (F + 1) / 2;
    struct kv_index_node *right = take_node(ix, 1);
    memcpy(nd->e, tmp, left * sizeof(tmp[0]));
    nd->n = left;
    memcpy(right->e, &tmp[left], (F + 1 - left) * sizeof(tmp[0]));
    right->n = F + 1 - left;
    struct kv_entry *sep = right->e[0];
    struct kv_index_node *add = right;
    /* Insert (sep, add) after child pos[d] of each parent, splitting up. */
    while (d > 0) {
        d--;
        struct kv_index_node *in = path[d];
        uint32_t at = pos[d] + 1;
        if (in->n < F) {
            memmove(&in->e[at + 1], &in->e[at], (in->n - at) * sizeof(in->e[0]));
            memmove(&in->child[at + 1], &in->child[at], (in->n - at) * sizeof(in->child[0]));
            in->e[at] = sep;
            in->child[at] = add;
            in->n++;
            return;
        }
        struct kv_entry *ts[F + 1];
        struct kv_index_node *tc[F + 1];
        memcpy(ts, in->e, at * sizeof(ts[0]));
        memcpy(tc, in->child, at * sizeof(tc[0]));
        ts[at] = sep;
        tc[at] = add;
        memcpy(&ts[at + 1], &in->e[at], (F - at) * sizeof(ts[0]));
        memcpy(&tc[at + 1], &in->child[at], (F - at) * sizeof(tc[0]));
        uint32_t l = (F + 1) / 2;
        struct kv_index_node *r = take_node(ix, 0);
        memcpy(in->e, ts, l * sizeof(ts[0]));
        memcpy(in->child, tc, l * sizeof(tc[0]));
        in->n = l;
        memcpy(r->e, &ts[l], (F + 1 - l) * sizeof(ts[0]));
        memcpy(r->child, &tc[l], (F + 1 - l) * sizeof(tc[0]));
        r->n = F + 1 - l;
        sep = r->e[0]; /* the first key under r: its separator in the parent */
        r->e[0] = NULL;
        add = r;
    }
    struct kv_index_node *root = take_node(ix, 0);
    root->n = 2;
    root->e[0] = NULL;
    root->child[0] = ix->root;
    root->e[1] = sep;
    root->child[1] = add;
    ix->root = root;
    ix->height++;
    ST_ASSERT(ix->height <= KV_INDEX_HEIGHT_MAX);
}

/* ---------- remove ---------- */

/* Children left and left + 1 of `in` (one of them under KV_INDEX_MIN): merge
 * them when they fit in one node, else split their slots evenly. */
static void rebalance(struct kv_index *ix, struct kv_index_node *in, uint32_t left)
{
    struct kv_index_node *l = in->child[left], *r = in->child[left + 1];
    uint32_t total = l->n + r->n;
    struct kv_entry *te[2 * F];
    struct kv_index_node *tc[2 * F];
    memcpy(te, l->e, l->n * sizeof(te[0]));
    memcpy(&te[l->n], r->e, r->n * sizeof(te[0]));
    if (!l->leaf) {
        memcpy(tc, l->child, l->n * sizeof(tc[0]));
        memcpy(&tc[l->n], r->child, r->n * sizeof(tc[0]));
        te[l->n] = in->e[left + 1]; /* the first key under r's child 0 */
    }
    if (total <= F) {
        memcpy(l->e, te, total * sizeof(te[0]));
        if (!l->leaf) memcpy(l->child, tc, total * sizeof(tc[0]));
        l->n = total;
        if (!l->leaf) l->e[0] = NULL;
        uint32_t at = left + 1;
        memmove(&in->e[at], &in->e[at + 1], (in->n - at - 1) * sizeof(in->e[0]));
        memmove(&in->child[at], &in->child[at + 1], (in->n - at - 1) * sizeof(in->child[0]));
        in->n--;
        drop_node(ix, r);
        return;
    }
    uint32_t nl = total / 2, nr = total - nl;
    memcpy(l->e, te, nl * sizeof(te[0]));
    memcpy(r->e, &te[nl], nr * sizeof(te[0]));
    if (!l->leaf) {
        memcpy(l->child, tc, nl * sizeof(tc[0]));
        memcpy(r->child, &tc[nl], nr * sizeof(tc[0]));
    }
    l->n = nl;
    r->n = nr;
    in->e[left + 1] = r->e[0];
    if (!l->leaf) {
        l->e[0] = NULL;
        r->e[0] = NULL;
    }
}

static void remove_at(struct kv_index *ix, struct kv_index_node *nd, const struct kv_entry *e)
{
    const uint8_t *key = e->data;
    size_t len = e->key_len;
    if (nd->leaf) {
        uint32_t p = leaf_lower(nd, key, len);
        ST_ASSERT(p < nd->n && nd->e[p] == e);
        memmove(&nd->e[p], &nd->e[p + 1], (nd->n - p - 1) * sizeof(nd->e[0]));
        nd->n--;
        return;
    }
    uint32_t c = inner_child(nd, key, len);
    struct kv_index_node *ch = nd->child[c];
    remove_at(ix, ch, e);
    /* e was the first key under child c: its separator moves on. The child
     * keeps at least KV_INDEX_MIN - 1 >= 1 slots here. */
    if (c > 0 && nd->e[c] == e) nd->e[c] = leftmost(ch);
    if (ch->n < KV_INDEX_MIN) rebalance(ix, nd, c > 0 ? c - 1 : 0);
}

void kv_index_remove(struct kv_index *ix, const struct kv_entry *e)
{
    ST_ASSERT(ix->root && ix->count > 0);
    remove_at(ix, ix->root, e);
    ix->count--;
    struct kv_index_node *root = ix->root;
    if (root->leaf && root->n == 0) {
        ix->root = NULL;
        ix->height = 0;
        drop_node(ix, root);
    } else if (!root->leaf && root->n == 1) {
        ix->root = root->child[0];
        ix->height--;
        drop_node(ix, root);
    }
}

void kv_index_replace(struct kv_index *ix, const struct kv_entry *old, struct kv_entry *fresh)
{
    const uint8_t *key = fresh->data;
    size_t len = fresh->key_len;
    struct kv_index_node *nd = ix->root;
    ST_ASSERT(nd);
    while (!nd->leaf) {
        uint32_t c = inner_child(nd, key, len);
        if (c > 0 && nd->e[c] == old) nd->e[c] = fresh;
        nd = nd->child[c];
    }
    uint32_t p = leaf_lower(nd, key, len);
    ST_ASSERT(p < nd->n && nd->e[p] == old);
    nd->e[p] = fresh;
}

struct kv_entry *kv_index_find(const struct kv_index *ix, const void *key, size_t len)
{
    const struct kv_index_node *nd = ix->root;
    if (!nd) return NULL;
    while (!nd->leaf)
        nd = nd->child[inner_child(nd, key, len)];
    uint32_t p = leaf_lower(nd, key, len);
    return p < nd->n && kv_index_key_cmp(key, len, nd->e[p]) == 0 ? nd->e[p] : NULL;
}

/* ---------- iteration ---------- */

/* The leaf position is past its end: climb to the next subtree's first. */
static void iter_settle(struct kv_index_iter *it)
{
    uint32_t d = it->depth - 1;
    if (it->path[d].pos < it->path[d].node->n) return;
    while (d > 0) {
        d--;
        if (it->path[d].pos + 1 < it->path[d].node->n) {
            it->path[d].pos++;
            const struct kv_index_node *nd = it->path[d].node->child[it->path[d].pos];
            for (d++; d < it->depth; d++) {
                it->path[d].node = nd;
                it->path[d].pos = 0;
                if (!nd->leaf) nd = nd->child[0];
            }
            return;
        }
    }
    it->depth = 0;
}

void kv_index_seek(const struct kv_index *ix, struct kv_index_iter *it, const void *key, size_t len)
{
    it->depth = 0;
    const struct kv_index_node *nd = ix->root;
    if (!nd) return;
    for (;;) {
        uint32_t p = nd->leaf ? leaf_lower(nd, key, len) : len ? inner_child(nd, key, len) : 0;
        it->path[it->depth].node = nd;
        it->path[it->depth].pos = p;
        it->depth++;
        if (nd->leaf) break;
        nd = nd->child[p];
    }
    iter_settle(it);
}

struct kv_entry *kv_index_iter_entry(const struct kv_index_iter *it)
{
    if (it->depth == 0) return NULL;
    const struct kv_index_node *leaf = it->path[it->depth - 1].node;
    return leaf->e[it->path[it->depth - 1].pos];
}

void kv_index_iter_next(struct kv_index_iter *it)
{
    if (it->depth == 0) return;
    it->path[it->depth - 1].pos++;
    iter_settle(it);
}

/* ---------- checker ---------- */

struct check {
    const struct kv_index *ix;
    const struct kv_entry *prev;
    uint64_t count, bytes;
};

static int entry_order(const struct kv_entry *a, const struct kv_entry *b)
{
    return kv_index_key_cmp(a->data, a->key_len, b);
}

static int check_node(struct check *ck, const struct kv_index_node *nd, uint32_t level)
{
    ck->bytes += malloc_usable_size((void *)(uintptr_t)nd);
    int root = nd == ck->ix->root;
    if ((level == 1) != (nd->leaf != 0)) return ST_ECORRUPT; /* leaves all at one depth */
    if (nd->n > F) return ST_ECORRUPT;
    if (!root && nd->n < KV_INDEX_MIN) return ST_ECORRUPT;
    if (root && nd->n < (nd->leaf ? 1u : 2u)) return ST_ECORRUPT;
    if (nd->leaf) {
        for (uint32_t i = 0; i < nd->n; i++) {
            if (!nd->e[i]) return ST_ECORRUPT;
            if (ck->prev && entry_order(ck->prev, nd->e[i]) >= 0) return ST_ECORRUPT;
            ck->prev = nd->e[i];
            ck->count++;
        }
        return 0;
    }
    for (uint32_t i = 0; i < nd->n; i++) {
        if (i > 0 && nd->e[i] != leftmost(nd->child[i])) return ST_ECORRUPT;
        int rc = check_node(ck, nd->child[i], level - 1);
        if (rc) return rc;
    }
    return 0;
}

int kv_index_check(const struct kv_index *ix)
{
    struct check ck = {.ix = ix};
    if (!ix->root) {
        if (ix->height != 0 || ix->count != 0) return ST_ECORRUPT;
    } else {
        int rc = check_node(&ck, ix->root, ix->height);
        if (rc) return rc;
    }
    for (const struct kv_index_node *s = ix->spare_leaf; s; s = spare_next(s))
        ck.bytes += malloc_usable_size((void *)(uintptr_t)s);
    for (const struct kv_index_node *s = ix->spare_inner; s; s = spare_next(s))
        ck.bytes += malloc_usable_size((void *)(uintptr_t)s);
    if (ck.count != ix->count || ck.bytes != ix->bytes) return ST_ECORRUPT;
    return 0;
}
