#include "cli/eval_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/core.h>

#include "wq/error.h"

extern char** environ;

namespace wq::cli {
namespace {

// The number is at the end of what a command prints; a command that prints a lot (a training
// log) must not make wq-gpu hold all of it.
constexpr std::size_t kKeptOutputBytes = 1u << 20;

bool is_separator(char c) {
  return std::strchr(" \t\n\r\v\f,;:=()[]{}\"'%", c) != nullptr;
}

std::optional<double> parse_whole_number(std::string_view token) {
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);  // from_chars refuses '+'
  if (token.empty()) return std::nullopt;
  double value = 0.0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

// Closes a file descriptor on every path out of evaluate().
struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

struct Exit {
  int status = 0;  ///< exit status, when signal == 0
  int signal = 0;  ///< the signal that killed it, or 0
};

Exit exit_of(int wstatus) {
  if (WIFSIGNALED(wstatus)) return {0, WTERMSIG(wstatus)};
  return {WEXITSTATUS(wstatus), 0};
}

// Stops the command's whole process group (the shell and whatever it started): SIGTERM, and
// SIGKILL for what is still there after a grace period. Reaps the shell.
void terminate_group(pid_t pid) {
  ::kill(-pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int wstatus = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      ::kill(-pid, SIGKILL);  // children the shell left behind, if any
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
}

// posix_spawn's attributes and file actions, destroyed on every path.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_init(&actions);
  }
  ~SpawnSetup() {
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

// Starts /bin/sh -c `command` with stdout into `stdout_fd`. posix_spawn, not fork: the CPU
// backend's worker threads are running, and a forked copy of a threaded process may only make
// async-signal-safe calls.
pid_t spawn_shell(const std::string& command, int stdout_fd) {
  SpawnSetup setup;
  ::posix_spawn_file_actions_addopen(&setup.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&setup.actions, stdout_fd, STDOUT_FILENO);
  // A group of its own, so that cancelling reaches everything the shell starts (a pipeline,
  // a script's children); Ctrl-C on a terminal then reaches wq-gpu alone, which ends it.
  ::posix_spawnattr_setpgroup(&setup.attr, 0);
  // What wq-gpu changed for itself (SIGXFSZ ignored, Ctrl-C caught) is not the command's.
  sigset_t defaults, mask;
  sigemptyset(&defaults);
  for (const int s : {SIGINT, SIGTERM, SIGPIPE, SIGXFSZ}) sigaddset(&defaults, s);
  sigemptyset(&mask);
  ::posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  ::posix_spawnattr_setsigmask(&setup.attr, &mask);
  ::posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::string shell = "sh", dash_c = "-c", text = command;
  char* argv[] = {shell.data(), dash_c.data(), text.data(), nullptr};
  pid_t pid = 0;
  const int err = ::posix_spawn(&pid, "/bin/sh", &setup.actions, &setup.attr, argv, environ);
  if (err != 0) throw Error(ErrorCode::kInternal, std::string("cannot start /bin/sh: ") + std::strerror(err));
  return pid;
}

// Reads the command's stdout until it closes and waits for the shell, polling `cancel`.
// Returns the shell's wait status; throws Error(kInterrupted) after stopping the group.
int collect(pid_t pid, int read_fd, std::string& output, const std::atomic<bool>* cancel) {
  bool open = true;
  char buffer[65536];
  for (;;) {
    if (cancel != nullptr && cancel->load()) {
      terminate_group(pid);
      throw Error(ErrorCode::kInterrupted, "interrupted");
    }
    if (open) {
      pollfd p{read_fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, 100);
      if (ready <= 0) continue;  // timeout, or EINTR from the signal that set `cancel`
      const ssize_t got = ::read(read_fd, buffer, sizeof buffer);
      if (got > 0) {
        output.append(buffer, static_cast<std::size_t>(got));
        if (output.size() > 2 * kKeptOutputBytes) output.erase(0, output.size() - kKeptOutputBytes);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        open = false;
      }
      continue;
    }
    int wstatus = 0;
    const pid_t done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) return wstatus;
    if (done < 0 && errno != EINTR) throw Error(ErrorCode::kInternal, std::string("waitpid: ") + std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string last_line(const std::string& output) {
  std::size_t end = output.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  const std::size_t newline = output.rfind('\n', end);
  const std::size_t begin = newline == std::string::npos ? 0 : newline + 1;
  const std::string line = output.substr(begin, end + 1 - begin);
  return line.size() > 80 ? line.substr(0, 77) + "..." : line;
}

}  // namespace

std::string command_for(const std::string& command_template, const std::string& path) {
  std::string quoted = "'";
  for (const char c : path) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  std::string out;
  for (std::size_t i = 0; i < command_template.size(); ++i) {
    if (command_template.compare(i, 2, "{}") == 0) {
      out += quoted;
      ++i;
    } else {
      out += command_template[i];
    }
  }
  return out;
}

std::optional<EvalNumber> last_number(std::string_view output) {
  std::size_t end = output.size();
  while (end > 0) {
    while (end > 0 && is_separator(output[end - 1])) --end;
    std::size_t begin = end;
    while (begin > 0 && !is_separator(output[begin - 1])) --begin;
    const std::string_view token = output.substr(begin, end - begin);
    if (const std::optional<double> value = parse_whole_number(token)) return EvalNumber{*value, std::string(token)};
    end = begin;
  }
  return std::nullopt;
}

EvalNumber evaluate(const std::string& command_template, const std::string& checkpoint, const std::string& setting,
                    const std::atomic<bool>* cancel) {
  const std::string command = command_for(command_template, checkpoint);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(ErrorCode::kInternal, std::string("pipe: ") + std::strerror(errno));
  FdCloser read_end{fds[0]};
  pid_t pid = 0;
  {
    FdCloser write_end{fds[1]};  // closed here: the pipe ends when the command's copies close
    pid = spawn_shell(command, fds[1]);
  }
  std::string output;
  const Exit exit = exit_of(collect(pid, fds[0], output, cancel));
  const std::string what = fmt::format("--eval for {}: the command '{}'", setting, command_template);
  if (exit.signal != 0) {
    throw Error(ErrorCode::kUsage, fmt::format("{} was killed by signal {} ({})", what, exit.signal, ::strsignal(exit.signal)));
  }
  if (exit.status != 0) throw Error(ErrorCode::kUsage, fmt::format("{} exited with status {}", what, exit.status));
  std::optional<EvalNumber> number = last_number(output);
  if (!number) {
    const std::string line = last_line(output);
    throw Error(ErrorCode::kUsage, fmt::format("{} printed no number on stdout ({})", what,
                                               line.empty() ? "it printed nothing" : "its last line: \"" + line + "\""));
  }
  return *number;
}

}  // namespace wq::cli
