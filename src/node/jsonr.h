/* A small JSON reader for the few documents the node itself reads: a join
 * request {"id":N,"raft":"h:p","http":"h:p"} and a join reply
 * {"cluster_id":"hex","members":[{...},...]}. Not a general parser: it
 * validates the syntax of the whole document, then answers lookups of
 * top-level keys and walks arrays of objects.
 *
 * Values are spans into the caller's text (no allocation, no copies);
 * strings are returned raw (still escaped): the node only reads addresses
 * and ids, which need no escapes, and jsonr_string() refuses escapes. */
#ifndef ST_NODE_JSONR_H
#define ST_NODE_JSONR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonr_span {
    const char *p; /* first byte of the value (e.g. '{', '"', digit) */
    size_t len;    /* bytes of the whole value */
};

/* Validates that text[0..len) is one JSON value (depth <= 32). 0 or ST_EINVAL. */
int jsonr_validate(const char *text, size_t len);

/* Finds member `key` of the object in `obj`; 1 and *out if found, else 0. */
int jsonr_get(struct jsonr_span obj, const char *key, struct jsonr_span *out);

/* Converters: 0 or ST_EINVAL (wrong type, escapes, overflow). */
int jsonr_uint(struct jsonr_span v, uint64_t *out);
/* Copies a string without escapes into out (cap bytes, NUL-terminated). */
int jsonr_string(struct jsonr_span v, char *out, size_t cap);
int jsonr_bool(struct jsonr_span v, bool *out);

/* Iterates the elements of an array: *cursor starts at 0; returns 1 and the
 * next element, 0 at the end. */
int jsonr_array_next(struct jsonr_span arr, size_t *cursor, struct jsonr_span *out);

#endif
