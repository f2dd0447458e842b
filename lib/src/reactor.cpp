// SPDX-License-Identifier: MPL-2.0
// reactor.cpp — the zmq::poll event loop behind zmesh::reactor.
//
// One round is: rebuild the pollitem array if the registrations changed, poll with a timeout that
// ends at the next timer deadline, dispatch the ready items, fire the due timers. The wake-up
// channel is a non-blocking self-pipe polled as item 0. A pipe rather than an eventfd because a
// signal handler must tell the loop *which* signal arrived (one byte per event), and rather than an
// inproc PAIR because write(2) is async-signal-safe and zmq_send is not; it also lets a reactor
// that polls only plain descriptors run without a zmq context.
#include <zmesh/error.hpp>
#include <zmesh/reactor.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace zmesh {

namespace {

using clock = reactor::clock;

// A byte on the wake-up pipe is either 0 (stop() or another wake-up) or a signal number.
static_assert(NSIG <= 256, "signal numbers must fit in one pipe byte");
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

// Process-wide signal routing. signal_route[sig] holds the write end of the owning reactor's pipe
// plus one, so that the zero-initialised value means "no owner" (0 is a valid descriptor).
std::array<std::atomic<int>, NSIG> signal_route{};
// Signal handlers currently between reading a route and writing to it. A reactor waits for this to
// drop to zero after clearing its routes and before closing its pipe, so a handler running on
// another thread never writes to a closed (or already reused) descriptor.
std::atomic<int> signal_handlers_in_flight{0};
// Serialises installing and restoring dispositions between reactors; never taken by the handler.
std::mutex signal_install_mutex;

void on_stop_signal(int sig) {
    // Only lock-free atomics and write(2): both are async-signal-safe.
    const int saved_errno = errno;
    signal_handlers_in_flight.fetch_add(1);
    const int route = (sig > 0 && sig < NSIG) ? signal_route[static_cast<std::size_t>(sig)].load() : 0;
    if (route > 0) {
        const auto byte = static_cast<unsigned char>(sig);
        // A full pipe already holds pending wake-ups; the loop will wake regardless.
        if (::write(route - 1, &byte, 1) < 0) {
        }
    }
    signal_handlers_in_flight.fetch_sub(1);
    errno = saved_errno;
}

clock::time_point saturating_add(clock::time_point t, clock::duration d) noexcept {
    if (d <= clock::duration::zero()) return t;
    if (d >= clock::time_point::max() - t) return clock::time_point::max();
    return t + d;
}

} // namespace

class reactor::impl {
  public:
    impl() {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
            throw std::system_error(errno, std::system_category(), "zmesh::reactor: pipe2");
        wake_read_ = fds[0];
        wake_write_ = fds[1];
        items_.push_back({nullptr, wake_read_, ZMQ_POLLIN, 0});
    }

    ~impl() {
        restore_signals();
        ::close(wake_read_);
        ::close(wake_write_);
    }

    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;

    // ---- sockets and descriptors ----

    void add_io(void* socket, int fd, socket_handler on_socket, fd_handler on_fd) {
        for (const auto& e : entries_)
            if (e->alive && e->socket == socket && (socket != nullptr || e->fd == fd))
                throw error(errc::invalid_argument, socket ? "zmesh::reactor::add: socket already registered"
                                                           : "zmesh::reactor::add_fd: descriptor already registered");
        auto e = std::make_unique<io_entry>();
        e->socket = socket;
        e->fd = fd;
        e->on_socket = std::move(on_socket);
        e->on_fd = std::move(on_fd);
        entries_.push_back(std::move(e));
        dirty_ = true;
    }

    bool remove_io(void* socket, int fd) noexcept {
        for (auto& e : entries_) {
            if (e->alive && e->socket == socket && (socket != nullptr || e->fd == fd)) {
                // Only marked: the entry may be running right now, or be ready later in the round
                // being dispatched. rebuild() frees it before the next poll.
                e->alive = false;
                dirty_ = true;
                return true;
            }
        }
        return false;
    }

    // ---- timers ----

    timer_id add_timer(clock::duration delay, clock::duration interval, timer_handler handler) {
        const std::uint64_t id = next_timer_id_++;
        const auto deadline = saturating_add(clock::now(), delay);
        // Node first: if the insert then throws, the node is merely stale and dropped lazily.
        push_node({deadline, next_seq_++, id});
        timers_.emplace(id, timer_entry{std::move(handler), interval});
        return timer_id{id};
    }

    bool cancel(std::uint64_t id) noexcept {
        if (id == firing_id_) {
            // The running timer's entry is erased once its handler returns.
            if (firing_done_) return false;
            firing_done_ = true;
            return true;
        }
        if (timers_.erase(id) == 0) return false;
        // Cancelled timers leave their heap node behind (lazy deletion, O(1) cancel). Compact when
        // the dead nodes outnumber the live ones, so a broker that re-arms a heartbeat timer per
        // message does not grow the heap without bound.
        if (heap_.size() > 64 && heap_.size() > 2 * timers_.size()) {
            std::erase_if(heap_, [this](const heap_node& n) { return !timers_.contains(n.id); });
            std::make_heap(heap_.begin(), heap_.end(), later);
        }
        return true;
    }

    // ---- the loop ----

    run_result run_until(clock::time_point limit) {
        running_guard guard(*this);
        for (;;) {
            if (const int s = state_.load(); s != state_running) return s == state_signalled ? run_result::signalled
                                                                                              : run_result::stopped;
            if (limit != clock::time_point::max() && clock::now() >= limit) return run_result::timed_out;
            if (round(limit).eterm) return run_result::terminated;
        }
    }

    std::size_t run_once(clock::time_point limit) {
        running_guard guard(*this);
        if (state_.load() != state_running) return 0;
        return round(limit).calls;
    }

    void stop() noexcept {
        int expected = state_running;
        state_.compare_exchange_strong(expected, state_stopped);
        // One pending byte is enough to wake the poll; skipping the others keeps the pipe nearly
        // empty, so a signal's byte always finds room.
        if (!wake_pending_.exchange(true)) {
            const unsigned char byte = 0;
            while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
            }
        }
    }

    void restart() noexcept { state_.store(state_running); }
    bool stopped() const noexcept { return state_.load() != state_running; }
    bool terminated() const noexcept { return terminated_.load(); }

    std::optional<int> last_signal() const noexcept {
        const int s = last_signal_.load();
        return s == 0 ? std::nullopt : std::optional<int>(s);
    }

    void stop_on_signals(std::initializer_list<int> signals) {
        const std::lock_guard lock(signal_install_mutex);
        // Check everything first so that a refused call installs nothing.
        for (const int sig : signals) {
            struct sigaction current {};
            if (sig == SIGKILL || sig == SIGSTOP || sig <= 0 || sig >= NSIG || ::sigaction(sig, nullptr, &current) != 0)
                throw error(errc::invalid_argument,
                            "zmesh::reactor::stop_on_signals: signal " + std::to_string(sig) + " cannot be caught");
            const int route = signal_route[static_cast<std::size_t>(sig)].load();
            if (route != 0 && route != wake_write_ + 1)
                throw error(errc::invalid_argument, "zmesh::reactor::stop_on_signals: signal " + std::to_string(sig) +
                                                        " already stops another reactor");
        }
        saved_signals_.reserve(saved_signals_.size() + signals.size());
        for (const int sig : signals) {
            auto& route = signal_route[static_cast<std::size_t>(sig)];
            if (route.load() == wake_write_ + 1) continue;
            // Route first, then install: the handler must never run without a route.
            route.store(wake_write_ + 1);
            struct sigaction action {};
            action.sa_handler = on_stop_signal;
            sigemptyset(&action.sa_mask);
            // SA_RESTART spares the process's other threads spurious EINTRs; zmq::poll still
            // returns EINTR here (poll(2) is never restarted), which the loop ignores.
            action.sa_flags = SA_RESTART;
            saved_signal saved{sig, {}};
            ::sigaction(sig, &action, &saved.previous);
            saved_signals_.push_back(saved);
        }
    }

  private:
    struct io_entry {
        void* socket = nullptr; // zmq socket handle, or null for a plain descriptor
        int fd = -1;
        socket_handler on_socket;
        fd_handler on_fd;
        bool alive = true; // false once removed; freed by the next rebuild()
    };

    struct timer_entry {
        timer_handler handler;
        clock::duration interval; // zero for a one-shot timer
    };

    struct heap_node {
        clock::time_point deadline;
        std::uint64_t seq; // insertion order: equal deadlines fire first-in, first-out
        std::uint64_t id;  // stale once timers_ no longer holds it (cancelled)
    };

    struct saved_signal {
        int sig;
        struct sigaction previous;
    };

    struct round_result {
        std::size_t calls = 0;
        bool eterm = false;
    };

    // Re-entrant run() from a handler would dispatch items_ while it is being dispatched.
    struct running_guard {
        explicit running_guard(impl& self) : self_(self) {
            if (self_.running_)
                throw error(errc::invalid_argument, "zmesh::reactor: run called from inside a handler");
            self_.running_ = true;
        }
        ~running_guard() { self_.running_ = false; }
        running_guard(const running_guard&) = delete;
        running_guard& operator=(const running_guard&) = delete;
        impl& self_;
    };

    // Clears the record of the timer being fired, also when its handler throws.
    struct firing_guard {
        firing_guard(impl& self, std::uint64_t id, bool one_shot) : self_(self) {
            self_.firing_id_ = id;
            self_.firing_done_ = one_shot;
        }
        ~firing_guard() {
            if (self_.firing_done_) self_.timers_.erase(self_.firing_id_);
            self_.firing_id_ = 0;
        }
        firing_guard(const firing_guard&) = delete;
        firing_guard& operator=(const firing_guard&) = delete;
        impl& self_;
    };

    static constexpr int state_running = 0;
    static constexpr int state_stopped = 1;
    static constexpr int state_signalled = 2;

    static bool later(const heap_node& a, const heap_node& b) noexcept {
        return a.deadline != b.deadline ? a.deadline > b.deadline : a.seq > b.seq;
    }

    void push_node(const heap_node& n) {
        heap_.push_back(n);
        std::push_heap(heap_.begin(), heap_.end(), later);
    }

    void pop_node() noexcept {
        std::pop_heap(heap_.begin(), heap_.end(), later);
        heap_.pop_back();
    }

    // Drops cancelled nodes from the top, so that front() is the next live deadline.
    const heap_node* next_timer() noexcept {
        while (!heap_.empty() && !timers_.contains(heap_.front().id)) pop_node();
        return heap_.empty() ? nullptr : &heap_.front();
    }

    void rebuild() {
        std::erase_if(entries_, [](const std::unique_ptr<io_entry>& e) { return !e->alive; });
        items_.resize(1); // item 0 is the wake-up pipe; capacity is kept
        for (const auto& e : entries_)
            items_.push_back({e->socket, e->socket ? 0 : e->fd, ZMQ_POLLIN, 0});
        dirty_ = false;
    }

    std::chrono::milliseconds poll_timeout(clock::time_point limit) noexcept {
        auto wake_at = limit;
        if (const heap_node* next = next_timer()) wake_at = std::min(wake_at, next->deadline);
        if (wake_at == clock::time_point::max()) return std::chrono::milliseconds(-1);
        const auto now = clock::now();
        if (wake_at <= now) return std::chrono::milliseconds(0);
        // Round up: waking a fraction of a millisecond early would only spin through a zero
        // timeout poll. Clamped because libzmq narrows the timeout to int.
        return std::min(std::chrono::ceil<std::chrono::milliseconds>(wake_at - now),
                        std::chrono::milliseconds(INT_MAX));
    }

    round_result round(clock::time_point limit) {
        round_result result;
        if (dirty_) rebuild();
        try {
            zmq::poll(items_.data(), items_.size(), poll_timeout(limit));
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) {
                // Context shutdown is the normal end of a loop, never an error.
                terminated_.store(true);
                result.eterm = true;
                return result;
            }
            if (e.num() != EINTR) throw;
            // A signal interrupted the poll; revents are not meaningful. Its byte (if it was one
            // of ours) is read next round.
            for (auto& item : items_) item.revents = 0;
        }

        // Entries are only appended or marked dead during dispatch, so index i still names the
        // entry that items_[i] was built from. Items added during the round lie beyond n.
        const std::size_t n = items_.size();
        for (std::size_t i = 0; i < n && state_.load() == state_running; ++i) {
            if ((items_[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) == 0) continue;
            if (i == 0) {
                drain_wake_pipe();
                continue;
            }
            io_entry& e = *entries_[i - 1];
            if (!e.alive) continue; // removed by an earlier handler of this round
            ++result.calls;
            if (e.socket)
                e.on_socket(zmq::socket_ref(zmq::from_handle, e.socket));
            else
                e.on_fd(e.fd);
        }

        fire_due_timers(result);
        return result;
    }

    void fire_due_timers(round_result& result) {
        const auto now = clock::now();
        // Timers added by the handlers below are left for the next round, even with zero delay,
        // so that a handler re-arming itself cannot keep this loop from returning.
        const std::uint64_t seq_limit = next_seq_;
        while (state_.load() == state_running) {
            const heap_node* top = next_timer();
            if (!top || top->deadline > now || top->seq >= seq_limit) break;
            const heap_node node = *top;
            pop_node();
            auto it = timers_.find(node.id);
            timer_entry& t = it->second;
            const bool one_shot = t.interval == clock::duration::zero();
            if (!one_shot) {
                // Re-armed before the call so that the handler can cancel it like any timer.
                auto next = saturating_add(node.deadline, t.interval);
                if (next <= now) next = saturating_add(now, t.interval); // fell behind: merge ticks
                push_node({next, next_seq_++, node.id});
            }
            // The entry stays in timers_ while its handler runs (its node is stable across
            // inserts); cancel() of the running timer only flags it, and the guard erases it.
            firing_guard guard(*this, node.id, one_shot);
            ++result.calls;
            t.handler(timer_id{node.id});
        }
    }

    void drain_wake_pipe() noexcept {
        // Cleared before reading: a stop() racing with this drain then writes a fresh byte.
        wake_pending_.store(false);
        std::array<unsigned char, 64> buf;
        for (;;) {
            const ssize_t got = ::read(wake_read_, buf.data(), buf.size());
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            for (ssize_t k = 0; k < got; ++k) {
                const unsigned char b = buf[static_cast<std::size_t>(k)];
                if (b == 0) continue; // stop() already set the state
                last_signal_.store(b);
                int expected = state_running;
                state_.compare_exchange_strong(expected, state_signalled);
            }
        }
    }

    void restore_signals() noexcept {
        if (saved_signals_.empty()) return;
        {
            const std::lock_guard lock(signal_install_mutex);
            for (auto it = saved_signals_.rbegin(); it != saved_signals_.rend(); ++it) {
                ::sigaction(it->sig, &it->previous, nullptr);
                signal_route[static_cast<std::size_t>(it->sig)].store(0);
            }
        }
        // A handler that read our route before it was cleared may still be writing to the pipe.
        while (signal_handlers_in_flight.load() != 0) std::this_thread::yield();
    }

    std::vector<std::unique_ptr<io_entry>> entries_; // entries_[i] is polled as items_[i + 1]
    std::vector<zmq::pollitem_t> items_;             // reused every round; rebuilt when dirty_
    bool dirty_ = false;

    std::vector<heap_node> heap_; // min-heap on (deadline, seq), with lazily deleted nodes
    std::unordered_map<std::uint64_t, timer_entry> timers_;
    std::uint64_t next_timer_id_ = 1; // 0 is never a timer: firing_id_ uses it for "none"
    std::uint64_t next_seq_ = 0;
    std::uint64_t firing_id_ = 0;
    bool firing_done_ = false; // the firing timer is to be erased when its handler returns

    int wake_read_ = -1;
    int wake_write_ = -1;
    std::atomic<bool> wake_pending_{false};
    std::atomic<int> state_{state_running};
    std::atomic<bool> terminated_{false};
    std::atomic<int> last_signal_{0};
    std::vector<saved_signal> saved_signals_;
    bool running_ = false;
};

namespace {
[[noreturn]] void throw_moved_from() {
    throw error(errc::not_running, "zmesh::reactor: used after being moved from");
}

template <class Handler> void require_handler(const Handler& h, const char* what) {
    if (!h) throw error(errc::invalid_argument, std::string("zmesh::reactor::") + what + ": empty handler");
}
} // namespace

reactor::reactor() : impl_(std::make_unique<impl>()) {}
reactor::~reactor() = default;
reactor::reactor(reactor&& other) noexcept = default;
reactor& reactor::operator=(reactor&& other) noexcept = default;

void reactor::add(zmq::socket_ref socket, socket_handler handler) {
    if (!impl_) throw_moved_from();
    if (socket.handle() == nullptr) throw error(errc::invalid_argument, "zmesh::reactor::add: null socket");
    require_handler(handler, "add");
    impl_->add_io(socket.handle(), -1, std::move(handler), {});
}

bool reactor::remove(zmq::socket_ref socket) noexcept {
    return impl_ && socket.handle() != nullptr && impl_->remove_io(socket.handle(), -1);
}

void reactor::add_fd(int fd, fd_handler handler) {
    if (!impl_) throw_moved_from();
    if (fd < 0) throw error(errc::invalid_argument, "zmesh::reactor::add_fd: negative descriptor");
    require_handler(handler, "add_fd");
    impl_->add_io(nullptr, fd, {}, std::move(handler));
}

bool reactor::remove_fd(int fd) noexcept { return impl_ && fd >= 0 && impl_->remove_io(nullptr, fd); }

reactor::timer_id reactor::add_timer(clock::duration delay, timer_handler handler) {
    if (!impl_) throw_moved_from();
    require_handler(handler, "add_timer");
    return impl_->add_timer(delay, clock::duration::zero(), std::move(handler));
}

reactor::timer_id reactor::add_timer(clock::duration delay, std::function<void()> handler) {
    require_handler(handler, "add_timer");
    return add_timer(delay, timer_handler([h = std::move(handler)](timer_id) { h(); }));
}

reactor::timer_id reactor::add_repeating_timer(clock::duration interval, timer_handler handler) {
    if (!impl_) throw_moved_from();
    require_handler(handler, "add_repeating_timer");
    if (interval <= clock::duration::zero())
        throw error(errc::invalid_argument, "zmesh::reactor::add_repeating_timer: interval must be positive");
    return impl_->add_timer(interval, interval, std::move(handler));
}

reactor::timer_id reactor::add_repeating_timer(clock::duration interval, std::function<void()> handler) {
    require_handler(handler, "add_repeating_timer");
    return add_repeating_timer(interval, timer_handler([h = std::move(handler)](timer_id) { h(); }));
}

bool reactor::cancel(timer_id id) noexcept { return impl_ && impl_->cancel(static_cast<std::uint64_t>(id)); }

reactor::run_result reactor::run() {
    if (!impl_) throw_moved_from();
    return impl_->run_until(clock::time_point::max());
}

reactor::run_result reactor::run_for(clock::duration duration) {
    if (!impl_) throw_moved_from();
    return impl_->run_until(saturating_add(clock::now(), duration));
}

std::size_t reactor::run_once(clock::duration timeout) {
    if (!impl_) throw_moved_from();
    return impl_->run_once(saturating_add(clock::now(), timeout));
}

void reactor::stop() noexcept {
    if (impl_) impl_->stop();
}

void reactor::restart() noexcept {
    if (impl_) impl_->restart();
}

bool reactor::stopped() const noexcept { return impl_ && impl_->stopped(); }

bool reactor::terminated() const noexcept { return impl_ && impl_->terminated(); }

void reactor::stop_on_signals(std::initializer_list<int> signals) {
    if (!impl_) throw_moved_from();
    impl_->stop_on_signals(signals);
}

std::optional<int> reactor::last_signal() const noexcept {
    return impl_ ? impl_->last_signal() : std::nullopt;
}

} // namespace zmesh
