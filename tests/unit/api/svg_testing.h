// Checks that an SVG the renderers produce is well-formed XML, shared by the renderer tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace corral::api::testing {

// Why `xml` is not well-formed (start and end tags balanced, no stray '<' or '&'), or "" when it is.
inline std::string xmlProblem(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      const auto semicolon = xml.find(';', i);
      const std::string entity = xml.substr(i, semicolon == std::string::npos ? 1 : semicolon - i + 1);
      if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
          entity != "&apos;")
        return "stray '&' at " + std::to_string(i);
      i += entity.size();
      continue;
    }
    if (xml[i] != '<') {
      if (xml[i] == '>') return "stray '>' at " + std::to_string(i);
      ++i;
      continue;
    }
    const auto end = xml.find('>', i);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
    std::string tag = xml.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return "'<' inside a tag at " + std::to_string(i);
    i = end + 1;
    if (tag.starts_with("?") || tag.starts_with("!")) continue;
    const bool closing = tag.starts_with("/");
    const bool selfClosing = tag.ends_with("/");
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \n\t/"));
    if (name.empty()) return "empty tag name at " + std::to_string(end);
    if (closing) {
      if (open.empty() || open.back() != name) return "</" + name + "> does not close the open element";
      open.pop_back();
    } else if (!selfClosing) {
      open.push_back(name);
    }
  }
  if (!open.empty()) return "<" + open.back() + "> is never closed";
  return "";
}

inline void expectWellFormedSvg(const std::string& svg) {
  EXPECT_EQ(xmlProblem(svg), "");
  EXPECT_TRUE(svg.find("<svg ") != std::string::npos);
  // The host's xmllint, when installed, is a second, real parser.
  if (access("/usr/bin/xmllint", X_OK) != 0) return;
  char dir[] = "/tmp/corral-svg-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::filesystem::path file = std::filesystem::path(dir) / "topology.svg";
  std::ofstream(file) << svg;
  const int status = std::system(("/usr/bin/xmllint --noout " + file.string()).c_str());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(status, 0) << "xmllint rejected the SVG";
}

}  // namespace corral::api::testing
