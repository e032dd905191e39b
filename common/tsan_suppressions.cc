// ThreadSanitizer suppressions, compiled in so that every binary finds them wherever it runs
// (a suppressions file would need a path that differs between bazel-bin, runfiles and CI).
// TSan calls this function at start-up; other builds never call it.
//
// RocksDB (Debian librocksdb7.8) is built without -fsanitize=thread: its lock-free memtable
// skiplist and background threads synchronise through std::atomic operations TSan cannot see, so
// TSan reports races between RocksDB's own threads. tmem never touches RocksDB memory directly.
//
// gRPC (libgpr, uninstrumented) starts its resolver and executor threads itself and does not
// join them all before a short-lived client such as tmemctl returns from main after a failed
// connection; TSan then reports a "thread leak" of a thread that tmem never created.
extern "C" const char* __tsan_default_suppressions() {
  return "race:librocksdb.so\n"
         "called_from_lib:librocksdb.so\n"
         "thread:libgpr.so\n";
}

// Interceptors (memcpy, memcmp, ...) report only when called from instrumented code: Debian's
// libstdc++ and librocksdb are uninstrumented and their internal copies are not tmem's races.
extern "C" const char* __tsan_default_options() { return "ignore_noninstrumented_modules=1"; }
