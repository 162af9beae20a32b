/* yamldoc: the few helpers over libyaml's document API that our YAML files
 * need: load a whole file with file:line:column errors, look at scalars,
 * and walk a mapping with its keys checked for duplicates. The file
 * formats themselves (their keys and values) belong to their modules.
 *
 * Who calls: any module, on any thread (no shared state). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

/* Loads path (borrowed for the call) into *doc (the caller's, freed with
 * yaml_document_delete when 0 is returned). A file of only comments or
 * nothing gives a document without a root node (am_yaml_root NULL).
 * Returns 0, or -errno / -EINVAL with "path:line:col: problem" in err (n
 * bytes, the caller's). The file is read as file.h reads: a regular file
 * of at most 16 MiB (-EINVAL, -EISDIR, -EFBIG otherwise), never waited on. */
int am_yaml_load(const char *path, yaml_document_t *doc, char *err, size_t n)
    __attribute__((warn_unused_result));

/* The same from text (len bytes, borrowed for the call); name (borrowed
 * for the call) stands for the file in messages. */
int am_yaml_load_string(const char *text, size_t len, const char *name, yaml_document_t *doc,
                        char *err, size_t n) __attribute__((warn_unused_result));

/* The root node, or NULL for an empty document. Borrowed from doc. */
yaml_node_t *am_yaml_root(yaml_document_t *doc);

/* The 1-based line of a node (for messages). */
static inline unsigned long am_yaml_line(const yaml_node_t *node)
{
    return (unsigned long)node->start_mark.line + 1;
}

/* A scalar's text (NUL-terminated, borrowed from doc), or NULL when node is
 * not a scalar. A plain "~", "null" or empty scalar reads as "" with
 * *is_null set (is_null may be NULL). */
const char *am_yaml_scalar(const yaml_node_t *node, bool *is_null);

/* Walks a mapping node: *key_out and *val_out are set to the i-th pair's
 * nodes (borrowed from doc). Returns true while a pair exists. */
bool am_yaml_pair(yaml_document_t *doc, const yaml_node_t *map, size_t i, yaml_node_t **key_out,
                  yaml_node_t **val_out);

/* The number of items of a sequence node (0 for another kind), and the
 * i-th (borrowed from doc, NULL past the end). */
size_t am_yaml_seq_len(const yaml_node_t *seq);
yaml_node_t *am_yaml_seq_item(yaml_document_t *doc, const yaml_node_t *seq, size_t i);

/* A mapping's key that repeats an earlier one (its node), or NULL. Keys
 * that are not scalars are returned as repeats too: none of our formats
 * has them. O(pairs^2): our mappings are small. */
yaml_node_t *am_yaml_duplicate_key(yaml_document_t *doc, const yaml_node_t *map);
