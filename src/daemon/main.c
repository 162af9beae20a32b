#include "cli.h"

int main(int argc, char **argv)
{
    return am_cli_main(argc, argv);
}
