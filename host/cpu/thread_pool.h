// A fixed pool of worker threads running parallel loops.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace wq::detail {

/// Threads for a pass over many files' headers (a stat, a mapping and a parse each): every
/// core, at most 8, at most one per file.
unsigned metadata_threads(std::size_t files);

class ThreadPool {
 public:
  /// `threads` counts the calling thread: 1 runs everything inline, 0 means every core.
  explicit ThreadPool(unsigned threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

  /// Runs task(i) for every i in [0, count), spread over the pool; the caller takes part.
  /// Returns when all are done; rethrows the first exception a task threw (the remaining
  /// tasks are skipped). A call made from inside a task runs its loop inline, so nested
  /// parallelism never deadlocks.
  void parallel_for(std::size_t count, const std::function<void(std::size_t)>& task);

 private:
  struct Job;
  void worker_loop();
  static void run_tasks(Job& job);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  Job* job_ = nullptr;
  std::size_t generation_ = 0;
  std::size_t busy_ = 0;
  bool stopping_ = false;
  std::mutex run_mutex_;  // one parallel_for at a time
};

}  // namespace wq::detail
