/* The ordered index of the kv: a B+tree of entry pointers ordered bytewise
 * by key (memcmp over the common length, then the shorter key first), next
 * to the hash table. It holds no key bytes of its own: leaves hold up to
 * KV_INDEX_FANOUT pointers to the table's entries, inner nodes hold children
 * and, as separators, pointers to the first entry of each child's subtree
 * but the first (e[i] is the smallest key under child[i], i >= 1). Because
 * separators are entry pointers, an entry that is freed or replaced must
 * leave the index first (kv_index_remove, kv_index_replace), which update
 * the one separator that may point at it.
 *
 * Fill: every node but the root holds at least KV_INDEX_MIN (a quarter) and
 * at most KV_INDEX_FANOUT slots; an underflowing node borrows from or merges
 * with a sibling, so memory stays bounded under any delete pattern: at worst
 * 4 pointer slots per key plus node headers, typically (random inserts,
 * ~70% fill) about 12 bytes per key (docs/KV.md, bench/kv).
 *
 * Allocation: kv_index_insert never allocates; kv_index_reserve, called
 * first, keeps enough spare nodes for one insert's splits, so the caller can
 * fail with ST_ENOMEM before it changes anything. Lookups and iteration
 * never allocate. Threading: none (the kv's thread). */
#ifndef ST_KV_INDEX_H
#define ST_KV_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct kv_entry;
struct kv_config;
struct kv_index_node;

#define KV_INDEX_FANOUT 64u
#define KV_INDEX_MIN (KV_INDEX_FANOUT / 4u)
/* 2^64 keys fit in far fewer levels at a minimum fill of 16. */
#define KV_INDEX_HEIGHT_MAX 16u

struct kv_index {
    struct kv_index_node *root; /* NULL when empty */
    uint32_t height;            /* 0 when empty, 1 when the root is a leaf */
    uint32_t spare_leaves;      /* reserved nodes, chained through child 0 / e[0] */
    uint32_t spare_inners;
    struct kv_index_node *spare_leaf, *spare_inner;
    uint64_t count; /* entries */
    uint64_t bytes; /* malloc_usable_size of every node, spares included */
};

/* A position in the index: valid until the next change of the index. */
struct kv_index_iter {
    uint32_t depth; /* levels in path; 0 = exhausted */
    struct {
        const struct kv_index_node *node;
        uint32_t pos;
    } path[KV_INDEX_HEIGHT_MAX];
};

/* An empty index (no allocation). */
void kv_index_init(struct kv_index *ix);
/* Frees every node (not the entries); ix is empty afterwards. */
void kv_index_free(struct kv_index *ix);
/* Room for one kv_index_insert: 0 or ST_ENOMEM (nothing changed). */
int kv_index_reserve(struct kv_index *ix, const struct kv_config *cfg);
/* Inserts e, whose key must be absent; requires kv_index_reserve() since
 * the last insert. */
void kv_index_insert(struct kv_index *ix, struct kv_entry *e);
/* Removes e (in the index); call before e is freed or handed elsewhere. */
void kv_index_remove(struct kv_index *ix, const struct kv_entry *e);
/* old (in the index) gives its place to fresh, which has the same key;
 * call while old's bytes are still readable. */
void kv_index_replace(struct kv_index *ix, const struct kv_entry *old, struct kv_entry *fresh);
/* The entry with exactly this key, or NULL. */
struct kv_entry *kv_index_find(const struct kv_index *ix, const void *key, size_t len);

/* Positions it at the first entry whose key is >= key (len 0: the first
 * entry of all). */
void kv_index_seek(const struct kv_index *ix, struct kv_index_iter *it, const void *key,
                   size_t len);
/* The entry at the position, NULL when exhausted. */
struct kv_entry *kv_index_iter_entry(const struct kv_index_iter *it);
/* Moves to the next entry in key order. */
void kv_index_iter_next(struct kv_index_iter *it);

/* Bytewise order of a key against an entry's key: <0, 0, >0. */
int kv_index_key_cmp(const void *key, size_t len, const struct kv_entry *e);

/* Full check (O(n)): order, fill bounds, equal leaf depth, separators equal
 * to the first entry of their subtree, count and bytes. 0 or ST_ECORRUPT. */
int kv_index_check(const struct kv_index *ix);

#endif
