// SessionStream: one tmem.v1.PagePool.Session stream to one server, shared by many callers.
//
// Callers Submit operations and later Wait for their replies; many operations are in flight on
// the stream at once (pipelining). A writer thread sends queued operations, coalescing whatever
// is queued into one transport write; a reader thread matches replies to operations by op id,
// so replies may come in any order.
//
// Failure: when the stream breaks (server gone, connection reset, Cancel) every operation in
// flight and every later one fails with UNAVAILABLE; the owner replaces a broken stream. A Wait
// that times out fails with DEADLINE_EXCEEDED, and the stream is cancelled when it has made no
// progress for that long, so a hung server cannot hold callers longer than their timeout.
//
// Thread-safety: every method is thread-safe.
// Lock order: SessionStream::mu_ -> Op::mu (never the other way).
// The Op and the contract of each method: page_stream.h.
#ifndef TMEM_CLIENT_SESSION_STREAM_H_
#define TMEM_CLIENT_SESSION_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "client/page_stream.h"
#include "common/mutex.h"
#include "proto/tmem_clients.h"

namespace tmem::client {

class SessionStream final : public PageStream {
 public:
  // Starts the stream on `rpc`; the connection is made by the first write, so this never blocks.
  explicit SessionStream(std::shared_ptr<tmem::v1::PagePoolClient> rpc);
  // Cancels the stream; operations still in flight fail with UNAVAILABLE.
  ~SessionStream();
  SessionStream(const SessionStream&) = delete;
  SessionStream& operator=(const SessionStream&) = delete;

  // Queues `request` (its op_id is assigned here) for sending.
  std::shared_ptr<Op> Submit(tmem::v1::SessionRequest request) override;
  // Waits until `deadline` for the reply of `op`. The reply's own code is not interpreted here:
  // a reply that says INVALID_ARGUMENT is returned as a reply. Errors: UNAVAILABLE (stream
  // broken), DEADLINE_EXCEEDED (no reply in time).
  absl::StatusOr<tmem::v1::SessionResponse> Wait(Op& op, std::chrono::steady_clock::time_point deadline) override;

  // Breaks the stream (as a failure would).
  void Cancel() override;
  // True once the stream failed or was cancelled: the owner should open a new one.
  bool broken() const override;
  // Replies received over the stream's life (tests, diagnostics).
  uint64_t replies() const override;

 private:
  void WriterLoop();
  void ReaderLoop();
  // Marks the stream broken and fails every operation in flight or queued.
  void Break(const absl::Status& why);

  std::shared_ptr<tmem::v1::PagePoolClient> rpc_;
  ::grpc::ClientContext ctx_;
  std::unique_ptr<::grpc::ClientReaderWriter<tmem::v1::SessionRequest, tmem::v1::SessionResponse>> rw_;

  mutable Mutex mu_;
  CondVar queued_cv_;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;  // the writer thread has left the call
  uint64_t next_op_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<tmem::v1::SessionRequest> queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Op>> in_flight_ ABSL_GUARDED_BY(mu_);  // by op id
  uint64_t replies_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_progress_ ABSL_GUARDED_BY(mu_);

  std::thread writer_;
  std::thread reader_;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_SESSION_STREAM_H_
