#include "client/session_stream.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tmem::client {

SessionStream::SessionStream(std::shared_ptr<tmem::v1::PagePoolClient> rpc) : rpc_(std::move(rpc)) {
  // Corked: the initial metadata leaves with the first write, so opening never blocks on a
  // server that is down or slow.
  ctx_.set_initial_metadata_corked(true);
  rw_ = rpc_->Session(&ctx_);
  {
    MutexLock lock(&mu_);
    last_progress_ = std::chrono::steady_clock::now();
  }
  writer_ = std::thread([this] { WriterLoop(); });
  reader_ = std::thread([this] { ReaderLoop(); });
}

SessionStream::~SessionStream() {
  Cancel();
  writer_.join();
  reader_.join();
}

std::shared_ptr<SessionStream::Op> SessionStream::Submit(tmem::v1::SessionRequest request) {
  auto op = std::make_shared<Op>();
  MutexLock lock(&mu_);
  if (broken_) {
    op->Complete(absl::UnavailableError("session stream is broken"), nullptr);
    return op;
  }
  const uint64_t id = next_op_id_++;
  request.set_op_id(id);
  if (in_flight_.empty()) last_progress_ = std::chrono::steady_clock::now();
  in_flight_[id] = op;
  queue_.push_back(std::move(request));
  queued_cv_.Signal();
  return op;
}

absl::StatusOr<tmem::v1::SessionResponse> SessionStream::Wait(Op& op, std::chrono::steady_clock::time_point deadline) {
  if (op.WaitUntil(deadline)) return op.Take();
  // Timed out. Forget the op (a late reply is dropped), and break the stream if nothing at all
  // came back for as long: the server is hung or the connection is dead without a reset.
  bool stalled = false;
  {
    MutexLock lock(&mu_);
    for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it) {
      if (it->second.get() == &op) {
        in_flight_.erase(it);
        break;
      }
    }
    stalled = !broken_ && std::chrono::steady_clock::now() - last_progress_ >= std::chrono::milliseconds(100);
  }
  if (stalled) Cancel();
  return absl::DeadlineExceededError("no reply on the session stream in time");
}

void SessionStream::Cancel() {
  ctx_.TryCancel();
  Break(absl::UnavailableError("session stream cancelled"));
}

bool SessionStream::broken() const {
  MutexLock lock(&mu_);
  return broken_;
}

uint64_t SessionStream::replies() const {
  MutexLock lock(&mu_);
  return replies_;
}

void SessionStream::Break(const absl::Status& why) {
  std::map<uint64_t, std::shared_ptr<Op>> failed;
  {
    MutexLock lock(&mu_);
    broken_ = true;
    failed.swap(in_flight_);
    queue_.clear();
    queued_cv_.SignalAll();
  }
  for (auto& [id, op] : failed) op->Complete(why, nullptr);
}

void SessionStream::WriterLoop() {
  std::vector<tmem::v1::SessionRequest> batch;
  while (true) {
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !broken_) queued_cv_.Wait(&mu_);
      if (broken_) break;
      while (!queue_.empty()) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Everything queued goes out together: all but the last write are only buffered.
    bool ok = true;
    for (size_t i = 0; i < batch.size() && ok; ++i) {
      ::grpc::WriteOptions options;
      if (i + 1 < batch.size()) options.set_buffer_hint();
      ok = rw_->Write(batch[i], options);
    }
    batch.clear();
    if (!ok) {
      // The reader sees the failure too and finishes the call.
      Break(absl::UnavailableError("session stream write failed"));
      break;
    }
  }
  rw_->WritesDone();
  MutexLock lock(&mu_);
  writer_done_ = true;
  queued_cv_.SignalAll();
}

void SessionStream::ReaderLoop() {
  tmem::v1::SessionResponse response;
  while (rw_->Read(&response)) {
    std::shared_ptr<Op> op;
    {
      MutexLock lock(&mu_);
      ++replies_;
      last_progress_ = std::chrono::steady_clock::now();
      auto it = in_flight_.find(response.op_id());
      if (it != in_flight_.end()) {
        op = std::move(it->second);
        in_flight_.erase(it);
      }
    }
    if (op != nullptr) op->Complete(absl::OkStatus(), &response);
  }
  // The writer may still be inside Write: cancel so that it returns, then collect the status.
  ctx_.TryCancel();
  Break(absl::UnavailableError("session stream closed"));
  {
    // Finish only once the writer has left the call.
    MutexLock lock(&mu_);
    while (!writer_done_) queued_cv_.Wait(&mu_);
  }
  ::grpc::Status st = rw_->Finish();
  (void)st;
}

}  // namespace tmem::client
