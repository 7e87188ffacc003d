// `corral compare`'s numbers as people read them, shared by the CLI (--svg, the tables) and corrald (the
// dashboard, GET /v1/comparisons): the statistics, the units, the compact form of a result, and the chart.
// Pure: JSON in, text out; absent or null fields are drawn as absent, never thrown on.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace corral::api {

inline const std::array<std::string, 2> kCompareKinds = {"container", "vm"};

// Whether a key of an instance's "boot" is a step of its own ("kernel_ms"; not "total_ms" or
// "guest_uptime_ms", which sum steps, nor "requested_at_ms", a time of day).
bool isBootStep(std::string_view key);
double median(std::vector<double> values);  // of a non-empty list
// {"median", "min", "max", "count"}, or null for no values.
nlohmann::json summarize(const std::vector<double>& values);
std::string millisecondsText(const nlohmann::json& value);  // "12.3 ms", "3.41 s", "-" when not a number
std::string bytesText(const nlohmann::json& value);         // "21.4 MiB", "-" when not a number

// A `corral compare` result without the per-instance documents: runs, image, ready_port, parallel, memory,
// accelerator, summary, isolation, network as they are, and each sample as {"name", "kind", "boot_ms",
// "memory_bytes", "boot_steps_ms", "ready_ms", "error"} (ready_ms: its readiness's, with --ready-port).
nlohmann::json compactComparison(const nlohmann::json& result);

// A standalone SVG chart of a compact comparison: each boot (with a ready_port: each time until the port
// answered) as a dot on a log time axis (a band from min to max, a bar at the median), where the boot time
// goes (the median steps of each kind as one stacked bar), and the median host memory per instance. Elements
// carry class and data-kind so a browser test can find them.
std::string renderComparisonSvg(const nlohmann::json& comparison);

}  // namespace corral::api
