/* The checks the one-process C tests share (latest_abi.c, tbcast_abi.c, typed_abi.c): each
 * failed check prints "FAIL line N: ..." (with the status's text and the last error for a
 * status) and counts in `failures`; the program exits 1 if any failed. One translation unit
 * per program, so the static counter is the program's. */
#ifndef SHMLANE_TEST_CHECK_H
#define SHMLANE_TEST_CHECK_H

#include "shmlane.h"

#include <stdint.h>
#include <stdio.h>

static int failures;

#define EXPECT(call, want)                                                                    \
    do {                                                                                      \
        int32_t got_ = (call);                                                                \
        if (got_ != (want)) {                                                                 \
            printf("FAIL line %d: %s: got %d (%s), want %d: %s\n", __LINE__, #call, (int)got_, \
                   shmlane_strerror(got_), (int)(want), shmlane_last_error());                 \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#define TRUE(cond)                                                                            \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                    \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#endif
