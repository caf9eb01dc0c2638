// Structured logs: one line per event, `ts=... level=... msg="..." key=value ...`,
// to stderr. Callers pass lease and tenant ids as fields; secrets (keys,
// tokens) are never passed to the logger.
//
// THREAD SAFETY: all functions may be called from any thread.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace gpulease::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

using LogField = std::pair<std::string_view, std::string>;

void set_log_level(LogLevel level);
[[nodiscard]] bool parse_log_level(std::string_view name, LogLevel& out);
[[nodiscard]] bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

inline void log_info(std::string_view m, std::initializer_list<LogField> f = {}) {
  log(LogLevel::kInfo, m, f);
}
inline void log_warn(std::string_view m, std::initializer_list<LogField> f = {}) {
  log(LogLevel::kWarn, m, f);
}
inline void log_error(std::string_view m, std::initializer_list<LogField> f = {}) {
  log(LogLevel::kError, m, f);
}
inline void log_debug(std::string_view m, std::initializer_list<LogField> f = {}) {
  log(LogLevel::kDebug, m, f);
}

}  // namespace gpulease::server
