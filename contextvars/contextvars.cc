#include "contextvars/contextvars.h"

#include <algorithm>

namespace asyncio {
namespace contextvars_internal {

namespace {

thread_local ContextRef t_thread_context;
thread_local Slot t_thread_slot{&t_thread_context};
thread_local Slot* t_current = nullptr;

Slot& current() noexcept { return t_current != nullptr ? *t_current : t_thread_slot; }

const ContextData* current_data_or_null() noexcept {
  const Slot& slot = current();
  return slot.context != nullptr ? slot.context->get() : nullptr;
}

bool is_empty(const ContextData* data) noexcept {
  return data == nullptr || !data->map || data->map->entries.empty();
}

// A new context holding `data`'s values (none for null): copy_context(),
// Context.copy() and the copies tasks and callbacks take. O(1): the map is
// shared.
ContextRef copy_of(const ContextData* data) {
  auto* copy = new ContextData;
  if (data != nullptr) copy->map = data->map;
  return ContextRef(copy);
}

// Where `var` is, or would go, in `entries` (sorted by address).
template <class Entries>
auto position(Entries& entries, const VarBase* var) {
  return std::lower_bound(entries.begin(), entries.end(), var,
                          [](const auto& entry, const VarBase* v) { return entry.first < v; });
}

// The current context's data, made when the slot holds the empty context.
ContextData& materialize() {
  Slot& slot = current();
  if (slot.context == nullptr) slot.context = slot.provide(slot.owner);
  if (!*slot.context) *slot.context = ContextRef(new ContextData);
  return *slot.context->get();
}

}  // namespace

const std::shared_ptr<const void>* Map::find(const VarBase* var) const {
  auto it = position(entries, var);
  if (it == entries.end() || it->first != var) return nullptr;
  return &it->second;
}

void ContextRef::release() noexcept {
  if (data_ != nullptr && data_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete data_;
}

SlotScope::SlotScope(Slot& slot) noexcept : previous_(t_current) { t_current = &slot; }
SlotScope::~SlotScope() { t_current = previous_; }

bool current_is_empty() noexcept { return is_empty(current_data_or_null()); }

ContextRef capture_current() {
  const ContextData* data = current_data_or_null();
  if (is_empty(data)) return {};
  return copy_of(data);
}

ContextData* current_data() noexcept { return const_cast<ContextData*>(current_data_or_null()); }

std::shared_ptr<const void> lookup_in(const ContextData* context, const VarBase* var) {
  if (is_empty(context)) return nullptr;
  const std::shared_ptr<const void>* value = context->map->find(var);
  return value != nullptr ? *value : nullptr;
}

std::shared_ptr<const void> lookup(const VarBase* var) {
  return lookup_in(current_data_or_null(), var);
}

std::shared_ptr<const void> assign(const VarBase* var, std::shared_ptr<const void> value) {
  ContextData& data = materialize();
  auto map = std::make_shared<Map>();
  if (data.map) map->entries = data.map->entries;
  auto& entries = map->entries;
  auto it = position(entries, var);
  std::shared_ptr<const void> old;
  if (it != entries.end() && it->first == var) {
    old = std::move(it->second);
    if (value) {
      it->second = std::move(value);
    } else {
      entries.erase(it);
    }
  } else if (value) {
    entries.emplace(it, var, std::move(value));
  }
  data.map = std::move(map);
  return old;
}

}  // namespace contextvars_internal

Context::Context() : ref_(new contextvars_internal::ContextData) {}

Context::Context(contextvars_internal::ContextRef ref) : ref_(std::move(ref)) {
  if (!ref_) ref_ = contextvars_internal::ContextRef(new contextvars_internal::ContextData);
}

Context Context::copy() const { return Context(contextvars_internal::copy_of(ref_.get())); }

size_t Context::size() const {
  const auto& map = ref_.get()->map;
  return map ? map->entries.size() : 0;
}

bool Context::contains(const contextvars_internal::VarBase& var) const {
  return contextvars_internal::lookup_in(ref_.get(), &var) != nullptr;
}

Context copy_context() {
  return Context(contextvars_internal::copy_of(contextvars_internal::current_data()));
}

}  // namespace asyncio
