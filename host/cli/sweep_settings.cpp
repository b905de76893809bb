#include "cli/sweep_settings.h"

#include <charconv>

#include <fmt/core.h>

#include "wq/error.h"

namespace wq::cli {
namespace {

template <typename T>
T parse_item(const std::string& flag, const std::string& item) {
  T value{};
  const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
  // The list's check has accepted the item; only a number beyond the type gets here.
  if (ec != std::errc() || end != item.data() + item.size()) {
    throw Error(ErrorCode::kUsage, flag + ": '" + item + "' is not a number this flag can take");
  }
  return value;
}

}  // namespace

bool is_cast_method(const std::string& method) {
  const std::optional<Method> m = parse_method(method);
  if (!m) return false;
  QuantSpec spec;
  spec.method = *m;
  return !spec.is_affine();
}

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t comma = list.find(',', begin);
    items.push_back(list.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin));
    if (comma == std::string::npos) return items;
    begin = comma + 1;
  }
}

CLI::Validator comma_list_of(const CLI::Validator& item) {
  return CLI::Validator(
      [item](std::string& value) -> std::string {
        if (value.empty()) return "empty list (give one value or several separated by commas)";
        for (std::string piece : split_commas(value)) {
          if (piece.empty()) return "empty item in the list '" + value + "'";
          const std::string shown = piece;
          const std::string error = item(piece);
          if (error.empty()) continue;
          return shown == value ? error : "'" + shown + "' in '" + value + "': " + error;
        }
        return {};
      },
      "");  // the option's type_name ("N,...") says it is a list
}

std::vector<SweepSetting> expand_settings(const QuantizeFlags& base, const SweepLists& lists) {
  const std::vector<std::string> bits = split_commas(lists.bits);
  const std::vector<std::string> methods = split_commas(lists.methods);
  const std::vector<std::string> granularities = split_commas(lists.granularities);
  const std::vector<std::string> group_sizes = split_commas(lists.group_sizes);
  std::vector<SweepSetting> settings;
  const auto add = [&](const std::string& b, const std::string& method, const std::string& granularity,
                       const std::string& group_size) {
    SweepSetting s;
    s.flags = base;
    s.flags.bits = parse_item<int>("--bits", b);
    s.flags.method = method;
    s.flags.granularity = granularity;
    s.flags.group_size = parse_item<std::uint64_t>("--group-size", group_size);
    try {
      s.options = options_from_flags(s.flags);
    } catch (const Error& e) {
      // Name the row: the same rule or method may be fine with another row's values.
      throw Error(e.code(), "sweep setting " + setting_flags_text(s.flags) + ": " + e.what(), e.hints());
    }
    settings.push_back(std::move(s));
  };
  for (std::size_t b = 0; b < bits.size(); ++b) {
    for (const std::string& method : methods) {
      if (is_cast_method(method)) {
        if (b == 0) add(bits[0], method, base.granularity, group_sizes[0]);
        continue;
      }
      for (const std::string& granularity : granularities) {
        if (granularity != "group") {
          add(bits[b], method, granularity, group_sizes[0]);
          continue;
        }
        for (const std::string& group_size : group_sizes) add(bits[b], method, granularity, group_size);
      }
    }
  }
  return settings;
}

std::string setting_flags_text(const QuantizeFlags& f) {
  if (is_cast_method(f.method)) return "--method " + f.method;
  std::string text = fmt::format("--method {} --bits {} --granularity {}", f.method, f.bits, f.granularity);
  if (f.granularity == "group") text += fmt::format(" --group-size {}", f.group_size);
  if (f.scale_dtype != "f32") text += " --scale-dtype " + f.scale_dtype;
  return text;
}

std::string setting_short_text(const QuantizeFlags& f) {
  if (is_cast_method(f.method)) return f.method;
  std::string text = fmt::format("{} {}b {}", f.method, f.bits, f.granularity);
  if (f.granularity == "group") text += fmt::format(" {}", f.group_size);
  return text;
}

}  // namespace wq::cli
