// SPDX-License-Identifier: MPL-2.0
// id_index.hpp — internal (not part of the API, may change in any release): a flat hash index of
// objects by their message id, shared by the broker (its pending requests) and the client (its
// outstanding ZMCT03 requests).
//
// Both look up, add and remove an id for every request, so the index sits on their hot paths.
// It holds only what is in flight (thousands, not millions), so a flat open-addressing table of
// {hash, object} stays in cache: lookups chase no nodes, and adding or removing allocates nothing
// once the table has grown to the load it sees. The id itself is read from the object, and only
// when the 64-bit hash matches. The objects belong to the caller and must stay where they are
// while indexed.
#pragma once

#include <zmesh/header.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace zmesh::detail {

/// @tparam T the indexed objects.
/// @tparam IdOf a function object: `const message_id& IdOf{}(const T&)`, the object's id, which
///         must not change while the object is indexed.
template <typename T, typename IdOf> class id_index {
  public:
    /// The object indexed under @p id, or nullptr.
    [[nodiscard]] T* find(const message_id& id) const noexcept {
        if (table_.empty()) return nullptr;
        return table_[probe(id, hash_of(id))].object;
    }

    /// Indexes @p r by its id, in place of any other object with that id.
    /// @throws std::bad_alloc
    void insert(T* r) {
        if ((size_ + 1) * 2 > table_.size()) grow();
        const std::uint64_t h = hash_of(IdOf{}(*r));
        slot& s = table_[probe(IdOf{}(*r), h)];
        if (!s.object) ++size_;
        s = slot{h, r};
    }

    /// Removes @p r, if it is the object indexed under its id.
    void erase(const T* r) noexcept {
        if (table_.empty()) return;
        const std::size_t mask = table_.size() - 1;
        std::size_t i = probe(IdOf{}(*r), hash_of(IdOf{}(*r)));
        if (table_[i].object != r) return;
        table_[i].object = nullptr;
        --size_;
        // Backward-shift deletion: moves back every entry after the hole that would no longer
        // be found past it, so no tombstones accumulate.
        for (std::size_t j = (i + 1) & mask; table_[j].object; j = (j + 1) & mask) {
            const std::size_t home = table_[j].hash & mask;
            const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (between) continue;
            table_[i] = table_[j];
            table_[j].object = nullptr;
            i = j;
        }
    }

    /// Objects indexed.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

  private:
    struct slot {
        std::uint64_t hash = 0;
        T* object = nullptr; // null: empty
    };

    static std::uint64_t hash_of(const message_id& id) noexcept {
        return std::hash<message_id>{}(id);
    }

    [[nodiscard]] std::size_t probe(const message_id& id, std::uint64_t h) const noexcept {
        const std::size_t mask = table_.size() - 1;
        std::size_t i = h & mask;
        while (table_[i].object && !(table_[i].hash == h && IdOf{}(*table_[i].object) == id))
            i = (i + 1) & mask;
        return i;
    }

    void grow() {
        std::vector<slot> old(table_.empty() ? min_size : table_.size() * 2);
        old.swap(table_);
        const std::size_t mask = table_.size() - 1;
        for (const slot& s : old) {
            if (!s.object) continue;
            std::size_t i = s.hash & mask; // ids are unique here: the first empty slot
            while (table_[i].object) i = (i + 1) & mask;
            table_[i] = s;
        }
    }

    static constexpr std::size_t min_size = 1024;
    std::vector<slot> table_; // power-of-two size, at most half full
    std::size_t size_ = 0;
};

} // namespace zmesh::detail
