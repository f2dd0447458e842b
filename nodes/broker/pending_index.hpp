// SPDX-License-Identifier: MPL-2.0
// pending_index.hpp — internal: the requests that are queued or at a worker, by message id
// (docs/protocol.md, "Executed once": a retry joins the pending request).
//
// Every ZMCT02/03 request is looked up, added and removed once, so this sits on the broker's hot
// path. It holds only what is in flight (thousands, not the millions of kept replies), so a flat
// open-addressing table of {hash, request} stays in cache: lookups chase no nodes and adding or
// removing allocates nothing once the table has grown to the load it sees. The id itself is read
// from the request, and only when the 64-bit hash matches.
#pragma once

#include <zmesh/header.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace zmesh::nodes::detail {

/// @tparam Request has a member `hdr.id` (a message_id) that does not change while indexed.
template <typename Request> class pending_index {
  public:
    /// The request pending with @p id, or nullptr.
    [[nodiscard]] Request* find(const message_id& id) const noexcept {
        if (table_.empty()) return nullptr;
        return table_[probe(id, hash_of(id))].request;
    }

    /// Indexes @p r by its id, in place of any other request with that id.
    /// @throws std::bad_alloc
    void insert(Request* r) {
        if ((size_ + 1) * 2 > table_.size()) grow();
        const std::uint64_t h = hash_of(r->hdr.id);
        slot& s = table_[probe(r->hdr.id, h)];
        if (!s.request) ++size_;
        s = slot{h, r};
    }

    /// Removes @p r, if it is the request indexed under its id.
    void erase(const Request* r) noexcept {
        if (table_.empty()) return;
        const std::size_t mask = table_.size() - 1;
        std::size_t i = probe(r->hdr.id, hash_of(r->hdr.id));
        if (table_[i].request != r) return;
        table_[i].request = nullptr;
        --size_;
        // Backward-shift deletion: moves back every entry after the hole that would no longer
        // be found past it, so no tombstones accumulate.
        for (std::size_t j = (i + 1) & mask; table_[j].request; j = (j + 1) & mask) {
            const std::size_t home = table_[j].hash & mask;
            const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (between) continue;
            table_[i] = table_[j];
            table_[j].request = nullptr;
            i = j;
        }
    }

    /// Requests indexed.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

  private:
    struct slot {
        std::uint64_t hash = 0;
        Request* request = nullptr; // null: empty
    };

    static std::uint64_t hash_of(const message_id& id) noexcept {
        return std::hash<message_id>{}(id);
    }

    [[nodiscard]] std::size_t probe(const message_id& id, std::uint64_t h) const noexcept {
        const std::size_t mask = table_.size() - 1;
        std::size_t i = h & mask;
        while (table_[i].request && !(table_[i].hash == h && table_[i].request->hdr.id == id))
            i = (i + 1) & mask;
        return i;
    }

    void grow() {
        std::vector<slot> old(table_.empty() ? min_size : table_.size() * 2);
        old.swap(table_);
        const std::size_t mask = table_.size() - 1;
        for (const slot& s : old) {
            if (!s.request) continue;
            std::size_t i = s.hash & mask; // ids are unique here: the first empty slot
            while (table_[i].request) i = (i + 1) & mask;
            table_[i] = s;
        }
    }

    static constexpr std::size_t min_size = 1024;
    std::vector<slot> table_; // power-of-two size, at most half full
    std::size_t size_ = 0;
};

} // namespace zmesh::nodes::detail
