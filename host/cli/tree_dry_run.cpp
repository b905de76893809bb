#include "cli/tree_dry_run.h"

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/plan_text.h"

namespace wq::cli {

void print_tree_plan(const std::vector<TreePlanEntry>& entries, const QuantizeOptions& options,
                     const std::optional<TreeShard>& shard) {
  std::string text;
  std::uint64_t in_total = 0, out_total = 0;
  std::size_t current = 0;
  for (const TreePlanEntry& e : entries) {
    if (e.action == "up to date") {
      ++current;
      text += fmt::format("  up to date  {}\n", e.output);
    } else if (e.action == "quantize") {
      text += fmt::format("  quantize    {} -> {}  ({} -> ~{} bytes)\n", e.input, e.output,
                          with_commas(e.plan.input_bytes), with_commas(e.plan.output_bytes));
      text += plan_tensor_lines(e.plan, options);
      in_total += e.plan.input_bytes;
      out_total += e.plan.output_bytes;
    } else if (e.action == "index") {
      text += fmt::format("  index       {} -> {}\n", e.input, e.output);
    } else if (e.action == "configure") {
      text += fmt::format("  configure   {}  (quantization_config: {})\n", e.input, options.pack_quantized.name());
    } else {
      text += fmt::format("  copy        {}  ({} bytes)\n", e.input, with_commas(e.bytes));
      in_total += e.bytes;
      out_total += e.bytes;
    }
  }
  const std::string which = shard ? fmt::format(" (shard {}/{} from {})", shard->index, shard->count, shard->source) : "";
  fmt::print("Plan{}: {} output files, {} up to date\n{}", which, entries.size(), current, text);
  fmt::print("To write: {} bytes in, about {} bytes out (container headers not counted)\n", with_commas(in_total),
             with_commas(out_total));
  fmt::print("Dry run: nothing was written.\n");
}

}  // namespace wq::cli
