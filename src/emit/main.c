/* alice-emit: the same program as `alice emit` (src/emit/emit.c). */
#include "emit.h"

int main(int argc, char **argv)
{
    return am_emit_main(argc, argv);
}
