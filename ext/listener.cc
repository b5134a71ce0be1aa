// listener.cc — background listeners (cdc_listen / cdc_unlisten).
#include "delivery.h"

namespace cdc {

void AppendListenersJson(sqlite3*, std::string* out) { out->append("[]"); }

}  // namespace cdc
