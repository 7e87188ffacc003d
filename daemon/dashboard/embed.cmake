# Turns the dashboard page into a C++ source, so corrald carries it and serves it without any file on
# disk: cmake -DINPUT=index.html -DOUTPUT=dashboard_page.cc -P embed.cmake
file(READ "${INPUT}" page)
string(FIND "${page}" ")corral_page\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )corral_page\"")
endif()
file(WRITE "${OUTPUT}.tmp" "// Generated from daemon/dashboard/index.html by daemon/dashboard/embed.cmake; edit the page, not this.
#pragma GCC diagnostic ignored \"-Woverlength-strings\"
#include \"daemon/web.h\"

namespace corral::daemon {

std::string_view dashboardPage() {
  static constexpr char kPage[] = R\"corral_page(${page})corral_page\";
  return {kPage, sizeof kPage - 1};
}

}  // namespace corral::daemon
")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
