/* The typed calls as docs in /work/notes/ffi-api.md agree them (ffi's conventions: a const
 * channel for opening endpoints). cpp_headers.rs compiles tests/cpp/typed.cpp against these
 * only while include/shmlane.h does not declare the typed ABI yet; once it does, the real
 * declarations are used and this file is not included. */
#ifndef SHMLANE_TYPED_ABI_SPEC_H
#define SHMLANE_TYPED_ABI_SPEC_H
#include "shmlane.h"
#ifdef __cplusplus
extern "C" {
#endif
typedef struct shmlane_sender shmlane_sender;
typedef struct shmlane_receiver shmlane_receiver;
int32_t shmlane_spsc_open(const char *name, int32_t how, size_t elem_size, size_t elem_align,
                          const char *type_name, const shmlane_options *opts,
                          shmlane_channel **out);
int32_t shmlane_mpmc_open(const char *name, int32_t how, size_t elem_size, size_t elem_align,
                          const char *type_name, const shmlane_options *opts,
                          shmlane_channel **out);
int32_t shmlane_sender_open(const shmlane_channel *ch, shmlane_sender **out);
int32_t shmlane_receiver_open(const shmlane_channel *ch, shmlane_receiver **out);
int32_t shmlane_sender_close(shmlane_sender *tx);
int32_t shmlane_receiver_close(shmlane_receiver *rx);
int32_t shmlane_try_send(shmlane_sender *tx, const void *elem, size_t elem_size);
int32_t shmlane_send(shmlane_sender *tx, const void *elem, size_t elem_size, int64_t timeout_ns);
int32_t shmlane_try_recv(shmlane_receiver *rx, void *elem, size_t elem_size);
int32_t shmlane_recv(shmlane_receiver *rx, void *elem, size_t elem_size, int64_t timeout_ns);
int32_t shmlane_try_send_many(shmlane_sender *tx, const void *elems, size_t count,
                              size_t elem_size, size_t *sent);
int32_t shmlane_try_recv_many(shmlane_receiver *rx, void *elems, size_t count, size_t elem_size,
                              size_t *received);
#ifdef __cplusplus
}
#endif
#endif
