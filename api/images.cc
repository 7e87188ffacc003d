// The progress stream's lines (api/images.h): what corrald writes and the CLI reads, one codec for both.
#include "api/images.h"

#include "api/api.h"

namespace corral::api {

using nlohmann::json;

json progressJson(const ProgressEvent& event) {
  return json{{"progress",
               {{"step", event.step},
                {"bytes_done", event.bytesDone},
                {"bytes_total", event.bytesTotal},
                {"layers_done", event.layersDone},
                {"layers_total", event.layersTotal}}}};
}

Result<StreamLine> parseStreamLine(std::string_view line) {
  json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object() || parsed.size() != 1) {
    return fail(invalidField("stream", "a progress stream line must be a JSON object with one key, got: {}",
                             line.substr(0, 200)));
  }
  StreamLine out;
  if (auto it = parsed.find("progress"); it != parsed.end() && it->is_object()) {
    auto integer = [&](const char* key) -> int64_t {
      auto value = it->find(key);
      return value != it->end() && value->is_number_integer() ? value->get<int64_t>() : 0;
    };
    auto step = it->find("step");
    if (step == it->end() || !step->is_string()) {
      return fail(invalidField("stream", "progress line without a \"step\" string: {}", line.substr(0, 200)));
    }
    out.progress = {step->get<std::string>(), integer("bytes_done"), integer("bytes_total"),
                    integer("layers_done"), integer("layers_total")};
    return out;
  }
  if (auto it = parsed.find("image"); it != parsed.end() && it->is_object()) {
    out.kind = StreamLine::Kind::result;
    out.result = *it;
    return out;
  }
  if (auto it = parsed.find("error"); it != parsed.end() && it->is_object()) {
    out.kind = StreamLine::Kind::error;
    out.error = errorFromJson(parsed, 500);
    return out;
  }
  return fail(invalidField("stream", "unknown progress stream line: {}", line.substr(0, 200)));
}

}  // namespace corral::api
