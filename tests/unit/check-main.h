/* The main() of a Check unit test program: runs one suite, exits non-zero
 * if any test failed. Shared by tests/unit and tests/emit. */
#pragma once

#include <check.h>
#include <stdlib.h>

#define AM_CHECK_MAIN(make_suite)                                                                  \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(make_suite());                                                \
        srunner_run_all(sr, CK_NORMAL);                                                            \
        int failed = srunner_ntests_failed(sr);                                                    \
        srunner_free(sr);                                                                          \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                                               \
    }
