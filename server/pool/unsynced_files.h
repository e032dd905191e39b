// Files a RocksDB store writes without ever syncing them, and the syncs that make them durable
// later (the page index's page store, page_index.h).
//
// A sync buys such a store nothing when it is created anew after any unclean stop, and it costs
// every page put: a sync makes the device write back all it holds, the page log's segments
// included, and each segment write waits behind it (300 ms stalls measured on a virtual disk,
// the log's write buffers full meanwhile). The owner closes the store at a clean stop and then
// calls FsyncFilesAndDirectory once.
#ifndef TMEM_SERVER_POOL_UNSYNCED_FILES_H_
#define TMEM_SERVER_POOL_UNSYNCED_FILES_H_

#include <rocksdb/env.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace tmem::pool {

// An Env whose writable files and directories skip Sync, Fsync and RangeSync; each skipped sync
// adds one to `*skipped`, which must outlive every file of the Env.
std::unique_ptr<rocksdb::Env> NewUnsyncedEnv(std::atomic<uint64_t>* skipped);

// fsync of every regular file in `dir` (not recursive), then of `dir` itself.
absl::Status FsyncFilesAndDirectory(const std::string& dir);
// fsync of the directory `dir` (its entries: files created or removed in it).
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_UNSYNCED_FILES_H_
