#include "server/pool/request_checks.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tmem::pool {

absl::Status CheckBatchSize(absl::string_view field, size_t entries) {
  if (entries == 0) return absl::InvalidArgumentError(absl::StrCat(field, " is empty; send 1 to ", kMaxBatch));
  if (entries > kMaxBatch) {
    return absl::InvalidArgumentError(absl::StrCat(field, " has ", entries, " entries; at most ", kMaxBatch));
  }
  return absl::OkStatus();
}

absl::Status CheckObjectKeySize(absl::string_view field, size_t bytes) {
  if (bytes == 0 || bytes > kMaxObjectKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", bytes, " bytes; an object key has 1 to ", kMaxObjectKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckPageSize(absl::string_view field, size_t bytes, const PoolInfo& pool) {
  if (bytes == pool.page_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", bytes, " bytes; pool ", pool.id, " has ", pool.page_bytes, "-byte pages"));
}

absl::StatusOr<PoolInfo> ReachPool(const PoolEngine& engine, PoolId pool, absl::string_view tenant, bool admin) {
  return admin ? engine.GetPoolInfo(pool) : engine.OwnedPool(pool, std::string_view(tenant.data(), tenant.size()));
}

}  // namespace tmem::pool
