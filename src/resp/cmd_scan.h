/* KEYS, SCAN, RANDOMKEY (cmd_scan.c) and the glob matcher they share. */
#ifndef ST_RESP_CMD_SCAN_H
#define ST_RESP_CMD_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "resp/resp_int.h"

/* Redis's stringmatchlen (case-sensitive): 1 if s matches the glob p. */
int resp_glob_match(const uint8_t *p, size_t plen, const uint8_t *s, size_t slen, int nesting);
/* The bytes of p before its first special character (* ? [ \): every key
 * matching p begins with them. */
size_t resp_glob_literal_prefix(const uint8_t *p, size_t plen);

/* Command handlers (the table is in commands.c). */
void resp_cmd_keys(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_scan(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc);
void resp_cmd_randomkey(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc);

#endif
