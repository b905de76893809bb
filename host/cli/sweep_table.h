// What `wq-gpu sweep` prints: the assignment's table (bytes, ratio, SQNR per setting, and the
// --eval column), as text line by line while the sweep runs, or as JSON at its end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/eval_command.h"
#include "cli/quantize_flags.h"
#include "cli/report_table.h"
#include "wq/backend.h"

namespace wq::cli {

/// The checkpoint swept, as the first line names it.
struct SweepModel {
  std::string path;
  std::string format;
  std::uint64_t bytes = 0;       ///< the input's bytes (a sharded one's shards together)
  std::size_t tensors = 0;
  std::size_t quantized = 0;     ///< tensors the policy and rules encode (the others stay raw)
  std::string scale_dtype;
  std::string backend;
};

/// One setting's results.
struct SweepRow {
  QuantizeFlags flags;           ///< the setting (method, bits, granularity, group size)
  std::uint64_t bytes = 0;       ///< the bytes `wq-gpu quantize` writes with it
  ErrorSummary errors;           ///< per-tensor SQNR: min and median, as quantize reports them
  ErrorStats pooled;             ///< every encoded tensor's energies summed
  std::optional<EvalNumber> eval;
};

/// The quantize report's numbers for a row: its per-tensor summary and pooled statistics.
void add_report(SweepRow& row, const QuantizeReport& report);

/// "examples/student_net.safetensors: 1,010,796 bytes (safetensors), 31 of 146 tensors quantized; ..."
std::string model_line(const SweepModel& model);

/// The table's lines, each ending in a newline, in one layout. `eval_name` empty: no --eval
/// column.
class SweepTableText {
 public:
  SweepTableText(SweepModel model, std::string eval_name);
  std::string header() const;
  std::string baseline(const EvalNumber& eval) const;
  std::string row(const SweepRow& row) const;
  /// What the columns mean, printed under the table.
  std::string legend() const;

 private:
  std::string eval_column(const std::optional<EvalNumber>& eval) const;

  SweepModel model_;
  std::string eval_name_;
  std::size_t eval_width_;
};

/// The whole table as JSON: the model, the baseline (with --eval) and the rows.
nlohmann::ordered_json sweep_json(const SweepModel& model, const std::optional<EvalNumber>& baseline,
                                  const std::vector<SweepRow>& rows, const std::string& eval_name,
                                  const std::string& eval_command);

}  // namespace wq::cli
