/* Compiled by cpp_headers.rs with cc -std=c99 -Wall -Wextra -Werror -pedantic: the generated C
 * header alone, and a use of each kind of declaration in it. */
#include "shmlane.h"

int main(void) {
  shmlane_stats st = {0, 0, 0, 0, 0, 0};
  shmlane_channel *ch = 0;
  int32_t kind = SHMLANE_KIND_BYTES;
  const char *e = shmlane_strerror(SHMLANE_E_FULL);
  (void)st;
  (void)kind;
  (void)e;
  return shmlane_channel_close(ch) == SHMLANE_OK ? 0 : 1;
}
