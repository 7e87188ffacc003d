// A captured frame as `POST /v1/trace` answers it (docs/api.md "trace"): the decoded layers as JSON, the
// one-line summary and the layer-by-layer text, with times counted from the first frame shown. Pure.
#pragma once

#include <chrono>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "net/frames.h"

namespace corral::daemon {

// `number` is the frame's place among those shown (1-based), `first` the first shown frame's timestamp,
// `event` the TCP tracker's note for it.
nlohmann::json traceFrameJson(const net::DecodedFrame& frame, size_t number, std::chrono::microseconds first,
                              bool outgoing, const std::optional<std::string>& event);

}  // namespace corral::daemon
