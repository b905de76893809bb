#include "cli/tree_dry_run.h"

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/plan_text.h"

namespace wq::cli {

int print_tree_plan(const std::vector<WorkUnit>& units, const QuantizeOptions& options, const std::string& settings,
                    const Journal& journal, const std::optional<WorkShard>& shard) {
  std::string text;
  std::uint64_t in_total = 0, out_total = 0;
  std::size_t files = 0, current = 0;
  const auto up_to_date = [&](const TreeFile& f, const std::string& s) {
    return journal.done(f.rel_output, f.input, s, f.output, options.cancel) != nullptr;
  };
  const auto quantize_lines = [&](const TreeFile& f) {
    ++files;
    if (up_to_date(f, settings)) {
      ++current;
      text += fmt::format("  up to date  {}\n", f.rel_output);
      return;
    }
    const QuantizeReport plan = plan_quantize(f.input, options);
    text += fmt::format("  quantize    {} -> {}  ({} -> ~{} bytes)\n", f.rel_input, f.rel_output,
                        with_commas(plan.input_bytes), with_commas(plan.output_bytes));
    text += plan_tensor_lines(plan, options);
    in_total += plan.input_bytes;
    out_total += plan.output_bytes;
  };
  for (const WorkUnit& u : units) {
    if (u.kind == UnitKind::kQuantize) quantize_lines(u.file);
    if (u.kind == UnitKind::kSharded) {
      for (const TreeFile& s : u.shards) quantize_lines(s);
      ++files;
      text += fmt::format("  index       {} -> {}\n", u.file.rel_input, u.file.rel_output);
    }
    if (u.kind == UnitKind::kConfig) {
      ++files;
      if (up_to_date(u.file, settings)) {
        ++current;
        text += fmt::format("  up to date  {}\n", u.file.rel_output);
      } else {
        text += fmt::format("  configure   {}  (quantization_config: {})\n", u.file.rel_input,
                            options.pack_quantized.name());
      }
    }
    if (u.kind == UnitKind::kCopy) {
      ++files;
      if (up_to_date(u.file, "copy")) {
        ++current;
        text += fmt::format("  up to date  {}\n", u.file.rel_output);
      } else {
        text += fmt::format("  copy        {}  ({} bytes)\n", u.file.rel_input, with_commas(u.bytes));
        in_total += u.bytes;
        out_total += u.bytes;
      }
    }
  }
  const std::string which = shard ? fmt::format(" (shard {}/{} from {})", shard->index, shard->count, shard->source) : "";
  fmt::print("Plan{}: {} output files, {} up to date\n{}", which, files, current, text);
  fmt::print("To write: {} bytes in, about {} bytes out (container headers not counted)\n", with_commas(in_total),
             with_commas(out_total));
  fmt::print("Dry run: nothing was written.\n");
  return 0;
}

}  // namespace wq::cli
