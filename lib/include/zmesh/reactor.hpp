// SPDX-License-Identifier: MPL-2.0
// reactor.hpp — the single-threaded event loop every zmesh node runs.
//
// A reactor waits in zmq::poll on a set of ZeroMQ sockets and plain file descriptors, calls a
// handler for each one that is readable, and fires timers (one-shot and repeating) in deadline
// order on std::chrono::steady_clock. It plays the role of czmq's zloop: brokers, workers and
// clients register their sockets and heartbeat timers here and let run() drive them. A reactor can
// also turn SIGINT/SIGTERM into a clean return from run(), and it treats context shutdown (ETERM)
// as a normal end of the loop, never as an error.
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>

namespace zmesh {

/// An event loop over zmq::poll: socket and file-descriptor handlers plus timers.
///
/// Handlers run on the thread that calls run(), one at a time. From inside any handler it is safe
/// to add or remove sockets, descriptors and timers, including the item whose handler is running;
/// an item removed while the round it was ready in is still being dispatched is not called. Items
/// added during a round take part from the next poll on.
///
/// Thread safety: only stop() and the observers stopped(), terminated() and last_signal() may be
/// called from other threads (or from signal-free code on any thread) while run() is executing.
/// Everything else belongs to the thread that runs the loop. A reactor must not be destroyed or
/// moved from inside one of its own handlers.
///
/// Ownership: the reactor never owns the sockets or descriptors it polls. Each must stay open until
/// it is removed or the reactor is destroyed.
///
/// Exceptions thrown by a handler propagate out of run(), run_for() or run_once() unchanged; the
/// reactor stays consistent and can be run again (the throwing item stays registered; a repeating
/// timer stays scheduled).
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmq::socket_t frontend(ctx, zmq::socket_type::router);
/// frontend.bind("tcp://*:5555");
///
/// zmesh::reactor r;
/// r.stop_on_signals({SIGINT, SIGTERM});
/// r.add(frontend, [](zmq::socket_ref s) {
///     zmesh::message m;
///     while (m.recv(s, zmq::recv_flags::dontwait)) { /* route m */ }
/// });
/// auto beat = r.add_repeating_timer(std::chrono::milliseconds(2500), [] { /* heartbeat */ });
/// r.run();                             // until a signal, stop() or context shutdown
/// if (r.last_signal()) { /* log which signal ended the loop */ }
/// @endcode
class ZMESH_EXPORT reactor {
  public:
    using clock = std::chrono::steady_clock;

    /// Identifies a timer for cancel(). Ids are never reused by a reactor.
    enum class timer_id : std::uint64_t {};

    /// Called when a registered socket has at least one message to read.
    using socket_handler = std::function<void(zmq::socket_ref)>;
    /// Called when a registered descriptor is readable, hung up or in error.
    using fd_handler = std::function<void(int)>;
    /// Called when a timer is due; receives the timer's own id (so a repeating timer can cancel
    /// itself).
    using timer_handler = std::function<void(timer_id)>;

    /// Why run() or run_for() returned.
    enum class run_result {
        stopped,    ///< stop() was called
        signalled,  ///< a signal passed to stop_on_signals() arrived (see last_signal())
        terminated, ///< the zmq context of a polled socket was shut down (ETERM)
        timed_out,  ///< run_for() only: the duration elapsed
    };

    /// Creates an idle reactor with no sockets, descriptors or timers.
    /// @throws std::system_error if the internal wake-up pipe cannot be created.
    reactor();
    /// Restores any signal dispositions replaced by stop_on_signals() and releases the wake-up
    /// pipe. Registered sockets and descriptors are left open.
    ~reactor();
    reactor(reactor&& other) noexcept;
    reactor& operator=(reactor&& other) noexcept;
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    /// Polls @p socket for input and calls @p handler whenever it is readable.
    ///
    /// The handler should read what is ready (with recv_flags::dontwait); ZeroMQ's readiness is
    /// level-triggered from the reactor's view, so anything left is reported again next round.
    /// The reactor keeps only the socket's handle; the socket must outlive its registration.
    /// @throws zmesh::error errc::invalid_argument if @p socket is null, already registered, or
    /// @p handler is empty; errc::not_running on a moved-from reactor.
    void add(zmq::socket_ref socket, socket_handler handler);

    /// Stops polling @p socket. Safe inside any handler, including the socket's own.
    /// @returns whether the socket was registered.
    bool remove(zmq::socket_ref socket) noexcept;

    /// Polls the file descriptor @p fd for input and calls @p handler when it is readable, or
    /// when it reports hang-up or an error. In the latter cases a read() returns 0 or fails; the
    /// handler must then remove the descriptor, or it is reported again at once.
    /// @throws zmesh::error errc::invalid_argument if @p fd is negative, already registered, or
    /// @p handler is empty; errc::not_running on a moved-from reactor.
    void add_fd(int fd, fd_handler handler);

    /// Stops polling @p fd (which the reactor does not close). Safe inside any handler.
    /// @returns whether the descriptor was registered.
    bool remove_fd(int fd) noexcept;

    /// Calls @p handler once, @p delay from now (a negative delay counts as zero).
    /// @returns the id to pass to cancel().
    /// @throws zmesh::error errc::invalid_argument if @p handler is empty; errc::not_running on a
    /// moved-from reactor. std::bad_alloc if memory runs out.
    timer_id add_timer(clock::duration delay, timer_handler handler);
    /// @copydoc add_timer(clock::duration, timer_handler)
    timer_id add_timer(clock::duration delay, std::function<void()> handler);

    /// Calls @p handler every @p interval, first one @p interval from now, until cancelled.
    ///
    /// Deadlines advance by exactly @p interval so they do not drift; if the loop falls more than
    /// one interval behind, the missed ticks are merged into one call rather than replayed.
    /// @returns the id to pass to cancel().
    /// @throws zmesh::error errc::invalid_argument if @p interval is not positive or @p handler is
    /// empty; errc::not_running on a moved-from reactor. std::bad_alloc if memory runs out.
    timer_id add_repeating_timer(clock::duration interval, timer_handler handler);
    /// @copydoc add_repeating_timer(clock::duration, timer_handler)
    timer_id add_repeating_timer(clock::duration interval, std::function<void()> handler);

    /// Cancels a timer so that it never fires again. Safe inside any handler, including the
    /// timer's own. O(1); the timer's slot in the schedule is reclaimed lazily.
    /// @returns whether the timer was still pending (false for a fired one-shot timer or an id
    /// already cancelled).
    bool cancel(timer_id id) noexcept;

    /// Runs the loop until stop(), a signal from stop_on_signals(), or context shutdown.
    ///
    /// A stop is sticky: once stopped, run() returns at once until restart() is called.
    /// @returns why the loop ended (never run_result::timed_out).
    /// @throws whatever a handler throws; zmq::error_t if zmq::poll fails other than by EINTR or
    /// ETERM; zmesh::error errc::invalid_argument if called from inside one of its own handlers,
    /// errc::not_running on a moved-from reactor.
    run_result run();

    /// Like run(), but returns run_result::timed_out once @p duration has passed.
    /// @throws as run().
    run_result run_for(clock::duration duration);

    /// Polls once, waiting at most @p timeout (less if a timer falls due sooner), then dispatches
    /// what is ready and fires due timers.
    /// @returns the number of handlers called (0 after stop or context shutdown, or on timeout).
    /// @throws as run().
    std::size_t run_once(clock::duration timeout);

    /// Asks the loop to return as soon as the running handler (if any) returns; handlers that were
    /// ready in the same round are not called. Wakes a blocked poll.
    ///
    /// Thread-safe and callable from handlers and other threads (not from signal handlers: use
    /// stop_on_signals()). No effect on a moved-from reactor.
    void stop() noexcept;

    /// Clears a previous stop so that run() can be called again. Not thread-safe.
    void restart() noexcept;

    /// Whether stop() was called or a stop signal arrived since construction or restart().
    /// Thread-safe.
    [[nodiscard]] bool stopped() const noexcept;

    /// Whether a poll has seen ETERM: the context of a polled socket was shut down. Thread-safe.
    [[nodiscard]] bool terminated() const noexcept;

    /// Makes the arrival of any of @p signals (typically SIGINT and SIGTERM) stop the loop.
    ///
    /// Installs an async-signal-safe handler with sigaction() that only writes the signal number
    /// to the reactor's wake-up pipe, so it works whichever thread of the process the signal is
    /// delivered to; the loop then returns run_result::signalled and last_signal() tells which
    /// signal it was. The previous dispositions are restored when the reactor is destroyed. Each
    /// signal can belong to one reactor at a time. Calling again adds signals; a signal already
    /// handled by this reactor is left as is. Not thread-safe with respect to other calls that
    /// change signal dispositions.
    /// @throws zmesh::error errc::invalid_argument if a signal cannot be caught (SIGKILL, SIGSTOP,
    /// out of range) or already belongs to another reactor; errc::not_running on a moved-from
    /// reactor.
    void stop_on_signals(std::initializer_list<int> signals);

    /// The last signal from stop_on_signals() that arrived, if any. Thread-safe.
    /// @returns the signal number, or std::nullopt if none has arrived.
    [[nodiscard]] std::optional<int> last_signal() const noexcept;

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh
