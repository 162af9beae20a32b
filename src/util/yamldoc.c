/* yamldoc: see yamldoc.h. */
#include "yamldoc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

/* Loads from an initialized parser; the error names name. */
static int load(yaml_parser_t *parser, const char *name, yaml_document_t *doc, char *err, size_t n)
{
    if (yaml_parser_load(parser, doc))
        return 0;
    const yaml_mark_t *m = parser->problem_mark.line || parser->problem_mark.column
                               ? &parser->problem_mark
                               : &parser->context_mark;
    snprintf(err, n, "%s:%lu:%lu: %s%s%s", name, (unsigned long)m->line + 1,
             (unsigned long)m->column + 1, parser->problem ? parser->problem : "invalid YAML",
             parser->context ? " " : "", parser->context ? parser->context : "");
    return parser->error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
}

int am_yaml_load(const char *path, yaml_document_t *doc, char *err, size_t n)
{
    /* Read at start and at SIGHUP, on the loop: a FIFO or a device is
     * refused, never waited on (file.h); 16 MiB is far past any real one. */
    char *text;
    size_t len;
    int rc = am_file_read(path, 16u << 20, &text, &len, err, n);
    if (rc != 0)
        return rc;
    rc = am_yaml_load_string(text, len, path, doc, err, n);
    free(text);
    return rc;
}

int am_yaml_load_string(const char *text, size_t len, const char *name, yaml_document_t *doc,
                        char *err, size_t n)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, n, "%s: out of memory", name);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = load(&parser, name, doc, err, n);
    yaml_parser_delete(&parser);
    return rc;
}

yaml_node_t *am_yaml_root(yaml_document_t *doc)
{
    return yaml_document_get_root_node(doc);
}

const char *am_yaml_scalar(const yaml_node_t *node, bool *is_null)
{
    if (is_null)
        *is_null = false;
    if (!node || node->type != YAML_SCALAR_NODE)
        return NULL;
    const char *s = (const char *)node->data.scalar.value;
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0)) {
        if (is_null)
            *is_null = true;
        return "";
    }
    return s;
}

bool am_yaml_pair(yaml_document_t *doc, const yaml_node_t *map, size_t i, yaml_node_t **key_out,
                  yaml_node_t **val_out)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return false;
    yaml_node_pair_t *p = map->data.mapping.pairs.start + i;
    if (p >= map->data.mapping.pairs.top)
        return false;
    *key_out = yaml_document_get_node(doc, p->key);
    *val_out = yaml_document_get_node(doc, p->value);
    return *key_out && *val_out;
}

size_t am_yaml_seq_len(const yaml_node_t *seq)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return 0;
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

yaml_node_t *am_yaml_seq_item(yaml_document_t *doc, const yaml_node_t *seq, size_t i)
{
    if (i >= am_yaml_seq_len(seq))
        return NULL;
    return yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
}

yaml_node_t *am_yaml_duplicate_key(yaml_document_t *doc, const yaml_node_t *map)
{
    yaml_node_t *k, *v;
    for (size_t i = 0; am_yaml_pair(doc, map, i, &k, &v); i++) {
        const char *a = am_yaml_scalar(k, NULL);
        if (!a)
            return k;
        yaml_node_t *k2, *v2;
        for (size_t j = 0; j < i && am_yaml_pair(doc, map, j, &k2, &v2); j++) {
            const char *b = am_yaml_scalar(k2, NULL);
            if (b && strcmp(a, b) == 0)
                return k;
        }
    }
    return NULL;
}
