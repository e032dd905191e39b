// What page_index.cc and page_index_errors.cc share; not for other users.
#ifndef TMEM_SERVER_POOL_PAGE_INDEX_INTERNAL_H_
#define TMEM_SERVER_POOL_PAGE_INDEX_INTERNAL_H_

#include <rocksdb/env.h>
#include <rocksdb/status.h>

#include <memory>
#include <string_view>

#include "absl/status/status.h"

namespace tmem::pool {

// A RocksDB status as an absl::Status (Internal for I/O errors, DataLoss for corruption,
// FailedPrecondition when another process holds the store, ResourceExhausted for a full disk).
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);
// RocksDB's messages (warnings and worse) into tmemd's log instead of a LOG file.
std::shared_ptr<rocksdb::Logger> NewRocksLogger();

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_PAGE_INDEX_INTERNAL_H_
