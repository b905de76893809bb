#include <algorithm>
#include <vector>

#include "wq/pipeline.h"

namespace wq {

ErrorSummary summarise_errors(const QuantizeReport& report) {
  std::vector<double> sqnr;
  ErrorSummary s;
  for (const TensorReport& t : report.tensors) {
    if (t.error.count == 0) continue;
    sqnr.push_back(t.error.sqnr_db());
    s.max_abs_error = std::max(s.max_abs_error, t.error.max_abs_error);
  }
  s.encoded = sqnr.size();
  if (!sqnr.empty()) {
    std::sort(sqnr.begin(), sqnr.end());
    s.sqnr_min_db = sqnr.front();
    const std::size_t m = sqnr.size() / 2;
    s.sqnr_median_db = sqnr.size() % 2 ? sqnr[m] : (sqnr[m - 1] + sqnr[m]) / 2;
  }
  return s;
}

}  // namespace wq
