// The checks of a page request at the edge, shared by every listener that takes page requests
// (gRPC's PagePool and the page wire protocol): the same bad input gets the same code and the
// same words on both planes. Each takes the name of the field as the edge spells it
// ("pages[3].handle.object" on gRPC, "entries[3].object" on the wire).
//
// Thread-safety: pure functions, except ReachPool, which reads the thread-safe engine.
#ifndef TMEM_SERVER_POOL_REQUEST_CHECKS_H_
#define TMEM_SERVER_POOL_REQUEST_CHECKS_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/pool/pool_engine.h"
#include "server/pool/pool_types.h"

namespace tmem::pool {

// Entries of one request (pages put, handles got or flushed) at most.
inline constexpr size_t kMaxBatch = 256;

// InvalidArgument for an empty batch or one past kMaxBatch.
absl::Status CheckBatchSize(absl::string_view field, size_t entries);
// InvalidArgument for an object key of 0 or more than kMaxObjectKeyBytes bytes.
absl::Status CheckObjectKeySize(absl::string_view field, size_t bytes);
// InvalidArgument for a page that is not exactly the pool's page size.
absl::Status CheckPageSize(absl::string_view field, size_t bytes, const PoolInfo& pool);
// The pool, if the caller may reach it: an admin reaches every pool, anyone else only the pools
// of its tenant. NotFound otherwise, in the words of a pool that does not exist.
absl::StatusOr<PoolInfo> ReachPool(const PoolEngine& engine, PoolId pool, absl::string_view tenant, bool admin);

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_REQUEST_CHECKS_H_
