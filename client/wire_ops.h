// The Session operations libtmemclient speaks, as page wire protocol bytes (docs/wire.md), and
// the wire's replies back as Session responses: what a WireStream sends and receives.
//
// Thread-safety: pure functions (DeliverGet writes into the op's buffers under the op's lock).
#ifndef TMEM_CLIENT_WIRE_OPS_H_
#define TMEM_CLIENT_WIRE_OPS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "client/page_stream.h"
#include "proto/tmem.pb.h"
#include "server/wire/wire_codec.h"

namespace tmem::client {

// Appends the wire request of `req` (id `id`) to `out`; InvalidArgument (nothing appended) for
// what the wire cannot carry or the server would close the connection for, in the server's words.
absl::Status Encode(const tmem::v1::SessionRequest& req, uint64_t id, std::vector<uint8_t>& out);
// The reply `r` as the Session stream's response.
tmem::v1::SessionResponse Decode(const wire::Reply& r);
// A GET reply's hits written straight into the op's buffers (PageStream::SubmitGet), and the op
// completed: its results say hit, with no data. Nothing is written if the waiter gave up.
void DeliverGet(const wire::Reply& r, PageStream::Op& op);
// Completes `op` with the answer the server would give to what Encode refused.
void CompleteRefused(PageStream::Op& op, uint64_t id, const absl::Status& s);

}  // namespace tmem::client

#endif  // TMEM_CLIENT_WIRE_OPS_H_
